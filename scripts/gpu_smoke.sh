#!/usr/bin/env bash
# GPU smoke test for a machine with one CUDA GPU and no network (install requirements-gpu.txt first).
#
#   bash scripts/gpu_smoke.sh [OUT_DIR]        # default OUT_DIR: outputs/gpu_smoke
#
# 1. builds the offline tiny models (python -m r4b_trl.tiny_models) into OUT_DIR/tiny/{text,vision};
# 2. runs the gpu-marked tests (pytest -m gpu);
# 3. runs SMOKE_STEPS (default 5) BPO steps with vLLM colocate, then the same with transformers generation:
#      python recipes/bpo.py --config recipes/tiny/bpo/tiny.yaml --use_vllm true --vllm_mode colocate \
#          --max_steps 5 --use_cpu false --bf16 true ...
#    on the tiny text model (override with SMOKE_MODEL=path; SMOKE_MODEL= keeps the config's model);
# 4. prints step times (trainer_state.json step_time, and wall time) and checks the rollout dump
#    (OUT_DIR/<run>/rollouts/step_*.jsonl: thinking / non_thinking rows balanced in every prompt group)
#    with scripts/smoke_report.py; the summary is also written to OUT_DIR/smoke_summary.json.
# Environment: PYTHON (default python), BPO_CONFIG, SMOKE_STEPS, SMOKE_MODEL, SKIP_PYTEST=1.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-outputs/gpu_smoke}
PY=${PYTHON:-python}
BPO_CONFIG=${BPO_CONFIG:-recipes/tiny/bpo/tiny.yaml}
STEPS=${SMOKE_STEPS:-5}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=disabled PYTHONUNBUFFERED=1

"$PY" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("gpu_smoke.sh needs a CUDA GPU (torch.cuda.is_available() is False)")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

mkdir -p "$OUT"
echo "== 1. tiny models"
"$PY" -m r4b_trl.tiny_models --out "$OUT/tiny/text" --kind text
"$PY" -m r4b_trl.tiny_models --out "$OUT/tiny/vision" --kind vision
SMOKE_MODEL=${SMOKE_MODEL-$OUT/tiny/text}

if [[ "${SKIP_PYTEST:-0}" != "1" ]]; then
  echo "== 2. gpu tests"
  "$PY" -m pytest -q -m gpu tests
fi

MODEL_ARGS=()
if [[ -n "$SMOKE_MODEL" ]]; then
  MODEL_ARGS=(--model_name_or_path "$SMOKE_MODEL")
fi
WALLS=()
run_bpo() {
  local name=$1
  shift
  local dir="$OUT/$name"
  rm -rf "$dir"
  echo "== 3. BPO, $name: $STEPS steps"
  local start end
  start=$(date +%s%N)
  "$PY" recipes/bpo.py --config "$BPO_CONFIG" "${MODEL_ARGS[@]}" --output_dir "$dir" --max_steps "$STEPS" \
    --use_cpu false --bf16 true --logging_steps 1 --report_to none "$@" 2>&1 | tee "$OUT/$name.log"
  end=$(date +%s%N)
  WALLS+=(--wall "$dir=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", (b - a) / 1e9}')")
}
run_bpo bpo_vllm_colocate --use_vllm true --vllm_mode colocate
run_bpo bpo_transformers --use_vllm false

echo "== 4. step times and rollout balance"
"$PY" scripts/smoke_report.py "$OUT/bpo_vllm_colocate" "$OUT/bpo_transformers" "${WALLS[@]}" \
  --expect-steps "$STEPS" --json "$OUT/smoke_summary.json"
