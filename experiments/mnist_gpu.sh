#!/usr/bin/env bash
# The study's budget on one GPU: 100k steps at batch 64 for TVDM and SVDM with OE, UE, no
# encoder, the remedies (free bits + KL warm-up) and the study's KL weight, then the full
# evaluation (10k test images, 10k samples for FID at T = 250). Resumable.
set -euo pipefail
PYTHON=${PYTHON:-python}  # the interpreter (e.g. a virtual environment's, not activated)
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/gpu}
STEPS=${STEPS:-100000}
"$PYTHON" experiments/run_grid.py \
  --configs=tvdm_oe,tvdm_ue,tvdm,tvdm_oe_fb,tvdm_oe_b1e4,svdm_oe,svdm_ue,svdm,svdm_oe_fb,svdm_oe_b1e4 \
  --steps="$STEPS" --root="$ROOT"
"$PYTHON" experiments/collect.py --root="$ROOT" --name=mnist_gpu \
  --command="STEPS=$STEPS experiments/mnist_gpu.sh"
