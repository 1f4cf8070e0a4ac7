#!/usr/bin/env bash
# GPU check for scripts/train.py on one GPU, at most 6 minutes on an H200: environment, bf16 GEMM
# peak, flash attention at each preset's head size, a tiny torch.compile, resume (20 steps,
# checkpoint, extend to 40), SIGTERM -> exit 143 with a checkpoint, a forced OOM classified oom,
# 1B compiled for 30 steps (median tokens/s over steps 15-30, MFU against 989 TFLOP/s and against
# the measured GEMM peak, peak memory, graph breaks) and 1B eager for 8 steps. Each stage has its
# own timeout; the stages are in scripts/gpu_check.py. Usage:
#
#   scripts/gpu_check.sh [WORK_DIR]        # default WORK_DIR: a new temporary directory
#
# Writes WORK_DIR/summary.json (and prints it); exit 0 when no stage failed or timed out. Without
# CUDA every stage but the environment reports "skipped: no CUDA", so the summary is still valid.
# Environment: PYTHON (default: the python3 on PATH when it has torch, else /usr/bin/python3),
# GPU (default 0), GPU_CHECK_BUDGET_S (360: stages that would start after it are skipped),
# GPU_CHECK_CHARS (synthetic characters per domain, 1500000). Nothing is downloaded: the corpus is
# the synthetic one, byte-tokenised, and the models use GPT-2's padded vocabulary
# (--vocab-size 50304) so that their sizes are the nominal ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-$(mktemp -d -t mixopt-gpucheck-XXXXXX)}"
mkdir -p "$work"
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=/usr/bin/python3
  if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then PYTHON="$(command -v python3)"; fi
fi
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-${GPU:-0}}"
exec "$PYTHON" "$here/gpu_check.py" --work-dir "$work" --python "$PYTHON"
