#!/usr/bin/env bash
# The README's run command: a coordinator on a temporary database, three simulated workers
# replaying the built-in synthetic source, one small study run to the end, then its status.
# Set MIXOPT_SIMULATE to replay another source (recording:FILE.jsonl, datamodel:FILE.json).
set -euo pipefail
cd "$(dirname "$0")/.."
source="${MIXOPT_SIMULATE:-synthetic}"
spec="${MIXOPT_SPEC:-examples/demo-study.yaml}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bin/coordinator -listen 127.0.0.1:0 -addr-file "$work/addr" -http-listen 127.0.0.1:0 -http-addr-file "$work/http" \
  -db "$work/mixopt.db" 2>"$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { echo "coordinator did not start:"; cat "$work/coordinator.log"; exit 1; }
addr=$(cat "$work/addr")
echo "coordinator on $addr, dashboard at http://$(cat "$work/http")/ (database and logs in $work)"
for i in 1 2 3; do
  bin/worker -coordinator "$addr" -hostname "sim-$i" -simulate "$source" -speedup 20000 -slots 2 \
    2>"$work/worker-$i.log" &
  pids+=($!)
done
export MIXOPT_ADDR="$addr"
bin/mixctl study create -f "$spec"
bin/mixctl study wait 1 --limit 10m
echo
bin/mixctl status
echo
bin/mixctl best 1
