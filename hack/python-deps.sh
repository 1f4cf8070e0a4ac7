#!/usr/bin/env bash
# Installs Debian's PyTorch and NumPy for /usr/bin/python3 when they are missing: the real
# training path (scripts/train.py) and its tests need them. PyPI is not used.
set -euo pipefail
if /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "python3-torch and python3-numpy are missing; install them: sudo apt-get install -y --no-install-recommends python3-torch python3-numpy" >&2
  exit 1
fi
echo "installing python3-torch and python3-numpy from Debian" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch python3-numpy >/dev/null
