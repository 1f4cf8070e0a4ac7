#!/usr/bin/env bash
# GPU check for scripts/train.py (issue 4): trains 20M and 150M for a few hundred steps on one
# GPU, prints tokens/s and model FLOPs utilisation, and checks that 1B fits at its preset
# batch. Usage:
#
#   scripts/gpu_check.sh [WORK_DIR]          # default WORK_DIR: a new temporary directory
#
# Environment: PYTHON (default /usr/bin/python3 if it has torch, else python3), GPU (default 0),
# PEAK_TFLOPS (dense bf16 peak of the GPU; guessed from its name when unset), STEPS_20M (300),
# STEPS_150M (200), STEPS_1B (6), COMPILE (auto|on|off, default auto).
# Nothing is downloaded: the corpus is the synthetic one, byte-tokenised, and the models use
# GPT-2's padded vocabulary (--vocab-size 50304) so their sizes are the nominal ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-$(mktemp -d -t mixopt-gpucheck-XXXXXX)}"
mkdir -p "$work"
gpu="${GPU:-0}"
compile="${COMPILE:-auto}"

if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then PYTHON=/usr/bin/python3; fi
fi
"$PYTHON" -c 'import torch, numpy; assert torch.cuda.is_available(), "CUDA is not available"' \
  || { echo "gpu_check: $PYTHON needs torch with CUDA and numpy" >&2; exit 1; }

name="$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$gpu" | head -n1)"
mem_mib="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i "$gpu" | head -n1)"
if [[ -z "${PEAK_TFLOPS:-}" ]]; then
  # Dense bf16 tensor-core peaks from the vendors' datasheets.
  case "$name" in
    *H200*|*H100*SXM*|*"H100 80GB HBM3"*) PEAK_TFLOPS=989 ;;
    *H100*PCIe*|*H100*) PEAK_TFLOPS=756 ;;
    *GH200*) PEAK_TFLOPS=989 ;;
    *B200*) PEAK_TFLOPS=2250 ;;
    *A100*) PEAK_TFLOPS=312 ;;
    *L40S*) PEAK_TFLOPS=362 ;;
    *A10G*|*A10*) PEAK_TFLOPS=125 ;;
    *) echo "gpu_check: unknown GPU '$name'; set PEAK_TFLOPS" >&2; exit 1 ;;
  esac
fi
echo "gpu_check: $name, ${mem_mib} MiB, peak ${PEAK_TFLOPS} TFLOP/s bf16, torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"

data="$work/data"
if [[ ! -f "$data/meta.json" ]]; then
  "$PYTHON" "$here/prepare_data.py" --out-dir "$data" --synthetic --tokenizer byte \
    --synthetic-domains prose,code,math --synthetic-chars 4000000 2>"$work/prepare.log"
fi

# run PRESET STEPS EXTRA...: trains on one GPU; protocol to $work/PRESET.jsonl, logs to .log.
run() {
  local preset="$1" steps="$2"; shift 2
  local eval_every=$(( steps > 50 ? steps / 2 : steps ))
  CUDA_VISIBLE_DEVICES="$gpu" "$PYTHON" "$here/train.py" --preset "$preset" --data-dir "$data" \
    --domains prose,code,math --mixture 0.5,0.3,0.2 --steps "$steps" --eval-every "$eval_every" \
    --eval-batches 2 --log-every 10 --vocab-size 50304 --device cuda --compile "$compile" \
    --max-memory-check "$@" >"$work/$preset.jsonl" 2>"$work/$preset.log"
}

# report PRESET: tokens/s over the second half of the points (after compile and warm-up), MFU
# with 6N + 12·L·d·T FLOPs per token, peak memory, first and last mean_ce.
report() {
  "$PYTHON" - "$work/$1.jsonl" "$PEAK_TFLOPS" <<'PY'
import json, sys
path, peak = sys.argv[1], float(sys.argv[2]) * 1e12
ev = [json.loads(l) for l in open(path) if l.strip()]
start = next((e["config"] for e in ev if e["event"] == "start"), None)
err = [e for e in ev if e["event"] == "error"]
if err or start is None:
    why = "%s: %s" % (err[-1]["class"], err[-1]["message"]) if err else "no start event"
    print("%-5s ERROR %s" % (start["preset"] if start else path, why))
    sys.exit(1)
pts = [e for e in ev if e["event"] == "point"]
tail = pts[len(pts) // 2:] or pts
# tokens_per_s of a point covers the interval since the previous point.
tps = sum(p["tokens_per_s"] for p in tail) / len(tail)
c = start
fpt = 6 * c["params"] + 12 * c["n_layers"] * c["d_model"] * c["seq_len"]
evals = [e for e in ev if e["event"] == "eval"]
done = [e for e in ev if e["event"] == "done"][-1]
print("%-5s params %6.1fM  batch %dx%d (micro %d, accum %d)  %9.0f tokens/s  MFU %5.1f%%  peak %7.0f MiB  mean_ce %.3f -> %.3f  (%s, %s, compile=%s)"
      % (c["preset"], c["params"] / 1e6, c["batch_size"], c["seq_len"], c["micro_batch"], c["grad_accum"],
         tps, 100 * tps * fpt / peak, done.get("peak_memory_mib", float("nan")),
         evals[0]["metrics"]["mean_ce"], evals[-1]["metrics"]["mean_ce"], c["attention"], c["dtype"], c["compile"]))
PY
}

status=0
for spec in "20M ${STEPS_20M:-300}" "150M ${STEPS_150M:-200}"; do
  set -- $spec
  if run "$1" "$2"; then report "$1" || status=1; else
    echo "$1: train.py exited $?; see $work/$1.log"; report "$1" || true; status=1
  fi
done

# 1B at its preset batch (global 128 x 1024, micro 8): a few full steps prove it fits; the
# peak memory says how much headroom is left.
if run 1B "${STEPS_1B:-6}"; then
  report 1B || status=1
  echo "1B fits at its preset batch on $name"
else
  code=$?
  report 1B || true
  echo "1B does NOT fit at its preset batch (exit $code; 4 = out of memory); see $work/1B.log"
  status=1
fi
echo "gpu_check: logs and protocol in $work"
exit $status
