# A real-training worker on a CUDA PyTorch base: bin/worker, scripts/ (train.py,
# model.py, prepare_data.py) and the Python packages they use. Build from the repository
# root:
#   docker build -f deploy/docker/worker.Dockerfile -t mixopt-worker .
# The PyTorch base is a build argument so that a cluster can pin the CUDA its driver takes.
ARG GO_IMAGE=golang:1.26-bookworm
ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/worker ./cmd/mixctl

FROM ${TORCH_IMAGE}
# numpy for the data loader; tiktoken and zstandard for scripts/prepare_data.py (gpt2
# tokenizer, .jsonl.zst corpora). Installed at build time: nothing is downloaded at run time.
RUN python -m pip install --no-cache-dir numpy tiktoken zstandard
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/mixopt-worker mixopt
# The worker finds train.py at ../scripts/train.py beside its own folder.
COPY --from=build /out/worker /out/mixctl /opt/mixopt/bin/
COPY scripts/ /opt/mixopt/scripts/
ENV PATH=/opt/mixopt/bin:$PATH
USER 10001:10001
ENTRYPOINT ["/opt/mixopt/bin/worker", "-python", "/opt/conda/bin/python"]
