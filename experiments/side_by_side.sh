#!/bin/bash
# Alternates the study's PyTorch code and vdm_vae on this machine, ROUNDS times each, and
# prints one JSON line per run (median seconds of a train step and of a reverse step).
#   experiments/side_by_side.sh STUDY_CHECKOUT SIZE ENCODER ROUNDS
# e.g. experiments/side_by_side.sh /tmp/VAE-VDM svdm none 2 | tee side_by_side_svdm.jsonl
# Run from the repository root; see experiments/time_study_code.py for the study's setup.
set -euo pipefail
study=$1 size=$2 encoder=$3 rounds=$4
for _ in $(seq 1 "$rounds"); do
  python experiments/time_study_code.py --study "$study" --size "$size" --encoder "$encoder"
  python -m vdm_vae.bench --sizes "$size" --encoders "$encoder" --repeats 5 \
      --sample-steps 2 --sample-repeats 2 | grep '"size"' | python -c '
import json, sys
row = json.loads(sys.stdin.read())
print(json.dumps({"code": "vdm_vae", **{k: row[k] for k in (
    "size", "encoder", "train_step_median_s", "train_step_min_s", "reverse_step_median_s")}}))'
done
