#!/usr/bin/env bash
# The MVDM row of the study's grid plus the collapse remedies, on MNIST, at a CPU budget:
# batch 32, 500 steps per run (the study: batch 64, 100k steps). Evaluation on the first
# 1,000 test images, probes fitted on 10,000 training images, no FID (sampling 10k images
# needs a GPU). Resumable: rerunning skips finished runs. Results of earlier calls (other
# CONFIGS) are kept in the table, each with its command.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/cpu}
STEPS=${STEPS:-500}
CONFIGS=${CONFIGS:-mvdm_oe_fb,mvdm_oe,mvdm,mvdm_oe_b1e4,mvdm_ue,mvdm_te,mvdm_se,mvdm_oepp}
python experiments/run_grid.py --configs="$CONFIGS" \
  --steps="$STEPS" --root="$ROOT" \
  --train_args="--config.training.batch_size_train=32 --config.training.steps_per_save=100 \
--config.training.steps_per_logging=50 --config.training.steps_per_eval=$STEPS \
--config.training.eval_sample_steps=50 --config.training.eval_num_samples=36" \
  --eval_args="--config.eval.num_test_images=1000 --config.eval.num_fid_samples=0 \
--config.eval.sample_steps=100 --config.eval.num_probe_train=10000"
# The learned prior p(w) of the remedy run, and the bound and samples under it.
PRIOR_CONFIGS=${PRIOR_CONFIGS-mvdm_oe_fb}
for c in ${PRIOR_CONFIGS//,/ }; do
  if [[ ",$CONFIGS," == *",$c,"* && ! -f "$ROOT/$c/eval/w_prior.json" ]]; then
    python -m vdm_vae.fit_prior --config="configs/$c.py" --workdir="$ROOT/$c" \
      --steps="${PRIOR_STEPS:-3000}" --config.eval.num_test_images=1000 \
      --config.eval.sample_steps=100
  fi
done
python experiments/collect.py --root="$ROOT" --name=mnist_mvdm_cpu \
  --command="CONFIGS=$CONFIGS STEPS=$STEPS experiments/mnist_mvdm_cpu.sh" --merge \
  ${NOTES:+--notes="$NOTES"}
