# The coordinator (and mixctl, for backups and checks inside the pod) on a minimal,
# non-root base. Build from the repository root:
#   docker build -f deploy/docker/coordinator.Dockerfile -t mixopt-coordinator .
ARG GO_IMAGE=golang:1.26-bookworm
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the runtime image has no C library.
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/coordinator ./cmd/mixctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coordinator /out/mixctl /usr/local/bin/
# The uid the Kubernetes manifests and the systemd unit expect.
USER 10001:10001
EXPOSE 7070 7071
ENTRYPOINT ["/usr/local/bin/coordinator"]
