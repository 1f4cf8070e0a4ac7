#!/usr/bin/env bash
# Installs from Debian what the tests need beyond Go, when it is missing: PyTorch and
# NumPy for /usr/bin/python3 (scripts/train.py and its tests; PyPI is not used), zstandard
# (scripts/prepare_data.py reads .zst corpora) and Chromium (the dashboard's headless-browser
# test).
set -euo pipefail
need=()
/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null || need+=(python3-torch python3-numpy)
/usr/bin/python3 -c 'import zstandard' 2>/dev/null || need+=(python3-zstandard)
[ -x /usr/bin/chromium ] || need+=(chromium)
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
