# mixopt — see README.md. `make demo` runs a study end to end; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.cache/tools
BUF := $(TOOLS)/buf
export PATH := $(TOOLS):$(PATH)

# Versions of the code generators; generated code is committed, so only `make proto` and
# `make proto-check` need them.
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# The linter `make test` runs (pinned, installed like buf).
STATICCHECK_VERSION := v0.8.2

.PHONY: build demo test test-go test-python vet lint proto proto-check tools test-deps bench clean
.PHONY: proto-python proto-python-check test-python-client

build:
	$(GO) build -o bin/ ./cmd/...

demo: build
	hack/demo.sh

test: vet lint proto-check test-go test-python

vet:
	$(GO) vet ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

# staticcheck's findings fail the build; a deliberate exception carries a //lint:ignore
# with its reason at the line.
lint: $(TOOLS)/staticcheck
	$(TOOLS)/staticcheck ./...

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

test-go: build test-deps
	$(GO) test -race -count=1 -timeout 30m ./...

test-python: test-deps
	@if [ -d scripts/tests ]; then /usr/bin/python3 -m unittest discover -s scripts/tests -v; fi

# The training script and the dashboard test need Debian packages; install them when missing (as root on a
# fresh machine of this kind).
test-deps:
	@hack/test-deps.sh

tools: $(BUF) $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc

$(BUF):
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools
	$(BUF) lint
	$(BUF) format -w
	$(BUF) generate

# Where buf generate writes Go code (buf.gen.yaml places it by go_package): the public API
# next to its .proto files, the store's record format in internal/store.
GO_PROTO_DIRS := proto internal/store/storepb

# Fails when the committed generated code or formatting differs from what buf produces.
proto-check: tools
	$(BUF) lint
	$(BUF) format -d --exit-code
	@tmp=$$(mktemp -d) && $(BUF) generate --output $$tmp && \
	  diff <(cd $$tmp && find $(GO_PROTO_DIRS) -name '*.pb.go' | sort) \
	    <(find $(GO_PROTO_DIRS) -name '*.pb.go' | sort) && \
	  for f in $$(cd $$tmp && find $(GO_PROTO_DIRS) -name '*.pb.go'); do diff $$tmp/$$f $$f || exit 1; done && \
	  rm -rf $$tmp && echo "generated code is current"

# The Python client's stubs (python/mixopt/v1, the proto package's path, so their own
# imports resolve inside the package) come from Debian's protoc 3.21 and grpc_python_plugin
# (hack/test-deps.sh installs them): what python3-protobuf and python3-grpcio load.
# Only the public API (mixopt.v1) is generated: the store's record format
# (proto/mixopt/store/v1) is internal to the coordinator.
PROTOC ?= protoc
GRPC_PYTHON_PLUGIN ?= /usr/bin/grpc_python_plugin
PYTHON_PROTOS := $(sort $(wildcard proto/mixopt/v1/*.proto))
PYTHON_PROTO_GEN = $(PROTOC) -I proto --plugin=protoc-gen-grpc_python=$(GRPC_PYTHON_PLUGIN) \
	--python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) $(PYTHON_PROTOS)

proto: proto-python
proto-check: proto-python-check

proto-python:
	@command -v $(PROTOC) >/dev/null && [ -x $(GRPC_PYTHON_PLUGIN) ] || \
	  { echo "protoc or grpc_python_plugin missing: make test-deps, or apt-get install protobuf-compiler protobuf-compiler-grpc" >&2; exit 1; }
	rm -f python/mixopt/v1/*_pb2*.py python/mixopt/v1/*_pb2.pyi
	$(call PYTHON_PROTO_GEN,python)

proto-python-check: test-deps
	@tmp=$$(mktemp -d) && $(call PYTHON_PROTO_GEN,$$tmp) && \
	  diff -r -x '__init__.py' -x '__pycache__' $$tmp/mixopt/v1 python/mixopt/v1 && rm -rf $$tmp && \
	  echo "generated Python code is current"

# The Python client against real coordinator binaries over loopback (python/tests).
test: test-python-client
test-python-client: build test-deps
	/usr/bin/python3 -m unittest discover -s python/tests -v

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean:
	rm -rf bin .cache
