#!/usr/bin/env bash
# Re-creates testdata/recordings/tiny-cpu.jsonl from the project's own real training runs:
# the synthetic corpus (scripts/prepare_data.py --synthetic, byte tokenizer, seed 0), a
# coordinator on a temporary database, real CPU workers with --record, and one random-mf
# study over the tiny presets (tiny, tiny-m, tiny-l) and random mixtures of prose, code and
# math, every run 200 steps with a point every 20. examples/recording-study.yaml replays it.
#
# Usage: scripts/make_recording.sh [OUT.jsonl]    (about 15 minutes on 2 busy cores)
# Environment: RECORD_TRIALS (21), RECORD_WORKERS (2, one CPU thread each), RECORD_SEED (1).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-testdata/recordings/tiny-cpu.jsonl}"
trials="${RECORD_TRIALS:-21}"
workers="${RECORD_WORKERS:-2}"
seed="${RECORD_SEED:-1}"
python=/usr/bin/python3

hack/test-deps.sh
go build -o bin/ ./cmd/...
work=$(mktemp -d)
pids=()
keep=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$keep" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$python" scripts/prepare_data.py --out-dir "$work/data" --synthetic --tokenizer byte --seed 0 >&2

bin/coordinator -listen 127.0.0.1:0 -addr-file "$work/addr" -http-listen "" -init -db "$work/mixopt.db" 2>"$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { echo "coordinator did not start:" >&2; cat "$work/coordinator.log" >&2; exit 1; }
addr=$(cat "$work/addr")
for i in $(seq "$workers"); do
  bin/worker -coordinator "$addr" -hostname "tiny-cpu-$i" -data-dir "$work/data" -python "$python" \
    -train-script "$PWD/scripts/train.py" -checkpoint-dir "$work/ckpt-$i" -threads 1 \
    -record "$work/runs.jsonl" 2>"$work/worker-$i.log" &
  pids+=($!)
done

# Parameter counts and tokens per step are the presets' on the byte-level corpus
# (train.py --preset P --print-config --data-dir DIR).
cat >"$work/spec.yaml" <<SPEC
name: tiny-cpu-recording
domains: [{name: prose}, {name: code}, {name: math}]
scales:
  - {name: tiny, params: 127296, tokens_per_step: 1024}
  - {name: tiny-m, params: 363168, tokens_per_step: 1024}
  - {name: tiny-l, params: 894080, tokens_per_step: 1024}
steps: [200]
eval_every: 20
objective: {metric: mean_ce}
target: {scale: tiny-l, steps: 200}
budget_flops: 1.0e15
max_parallel: $workers
max_trials: $trials
policy: random-mf
seed: $seed
SPEC
export MIXOPT_ADDR="$addr"
bin/mixctl study create -f "$work/spec.yaml"
bin/mixctl study wait 1 --limit 2h || { keep=1; exit 1; }
bin/mixctl trials 1 >&2
# Every trial must have succeeded and been recorded, else the recording is incomplete.
runs=$(grep -c . "$work/runs.jsonl" || true)
[ "$runs" = "$trials" ] || { echo "recorded $runs runs, want $trials" >&2; keep=1; exit 1; }
mkdir -p "$(dirname "$out")"
# Lines sorted by run id, so that a re-run differs only where the runs do.
sort "$work/runs.jsonl" >"$out"
echo "wrote $out: $runs runs, $(wc -c <"$out") bytes" >&2
