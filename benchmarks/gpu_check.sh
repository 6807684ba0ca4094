#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): the machine; our train step and the study's PyTorch
# step taking turns (MVDM, TVDM, SVDM, no encoder and OE, batch 64) with our SVDM + OE step at
# batch 64 and 256 and 1, 4 and 16 steps per call; main.py on SVDM + OE with and without the
# study's evaluation cadence; 1,000 samples at T = 1000; the benchmark if time is left; and the
# projected wall time of the study's runs for both codes. JSON and markdown into $OUT.
#
#   OUT=/tmp/gpu_quick benchmarks/gpu_check.sh --quick   # any CPU, tiny sizes
#
# On the device machine (no network; see /work/.library/device/README.md), first, here, with
# network, from the repository root, with a checkout of the study's repository
# (git clone https://github.com/diegogcerdas/VAE-VDM /tmp/VAE-VDM):
#
#   python benchmarks/gpu_check.py --prepare --study=/tmp/VAE-VDM
#
# It writes the git-ignored .gpu/ (18 MB): whl/ with the wheels of ml_collections, clu,
# diffusers and ema-pytorch (6.5 MB), mnist.npz (MNIST, compressed, 11.5 MB) and study/src
# (the study's code, 0.1 MB; never committed). Then the device tool's run, with carry [".gpu"]
# and timeout_s 540 (the check keeps to a 470 s budget, the wheel install a few seconds):
#
#   benchmarks/gpu_check.sh
#
# Its files come back from $OUT (gpu_check.json, gpu_check.md, logs.txt, samples.png, and
# bench.md when the benchmark ran); commit them under experiments/results/gpu_<date>/ with
# this command and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import ml_collections, clu, diffusers, ema_pytorch" 2>/dev/null \
    && compgen -G ".gpu/whl/*.whl" >/dev/null; then
  # The device's Python lacks these; their dependencies (torch, huggingface-hub, ...) are there.
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/vdm_vae_site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/vdm_vae_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
