#!/usr/bin/env bash
# The README's run command: a coordinator on a temporary database, three simulated workers
# replaying testdata/recordings/tiny-cpu.jsonl (real CPU training runs of the tiny presets,
# made by scripts/make_recording.sh), the study in examples/recording-study.yaml run to the
# end, then its status. Set MIXOPT_SIMULATE to replay another source (synthetic,
# recording:FILE.jsonl, datamodel:FILE.json) and MIXOPT_SPEC to a study it answers, e.g.
# MIXOPT_SIMULATE=synthetic MIXOPT_SPEC=examples/demo-study.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
source="${MIXOPT_SIMULATE:-recording:testdata/recordings/tiny-cpu.jsonl}"
spec="${MIXOPT_SPEC:-examples/recording-study.yaml}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bin/coordinator -listen 127.0.0.1:0 -addr-file "$work/addr" -http-listen 127.0.0.1:0 -http-addr-file "$work/http" \
  -init -db "$work/mixopt.db" 2>"$work/coordinator.log" &
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
