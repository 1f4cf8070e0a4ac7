#!/usr/bin/env bash
# Installs from Debian what the tests need beyond Go, when it is missing: PyTorch and
# NumPy for /usr/bin/python3 (scripts/train.py and its tests; PyPI is not used), zstandard
# (scripts/prepare_data.py reads .zst corpora), Chromium (the dashboard's headless-browser
# test), shellcheck (the Slurm script's test), and gRPC, protobuf, pandas, matplotlib,
# PyYAML, tqdm and the protoc stub generators for the Python client (python/).
set -euo pipefail
need=()
/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null || need+=(python3-torch python3-numpy)
/usr/bin/python3 -c 'import zstandard' 2>/dev/null || need+=(python3-zstandard)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The Python client (python/): its runtime, what its tests use, and the stub generators.
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || need+=(python3-grpcio python3-protobuf)
/usr/bin/python3 -c 'import pandas' 2>/dev/null || need+=(python3-pandas)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
/usr/bin/python3 -c 'import yaml, tqdm' 2>/dev/null || need+=(python3-yaml python3-tqdm)
[ -x /usr/bin/protoc ] && [ -x /usr/bin/grpc_python_plugin ] || need+=(protobuf-compiler protobuf-compiler-grpc)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages; install them: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "installing from Debian: ${need[*]}" >&2
for i in 1 2 3 4 5; do
  # Another apt run may hold the dpkg lock: wait and retry.
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    exit 0
  fi
  sleep 10
done
echo "could not install ${need[*]}" >&2
exit 1
