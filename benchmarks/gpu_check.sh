#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): the machine, `python benchmarks/bench.py` for every
# VDM size, no encoder and OE, float32 and bfloat16, three minutes of SVDM + OE training on
# real MNIST through main.py, and 1,000 samples at T = 1000; JSON and markdown into $OUT.
#
#   OUT=/tmp/gpu_quick benchmarks/gpu_check.sh --quick   # any CPU, tiny sizes
#
# On the device machine (no network; see /work/.library/device/README.md), first, here, with
# network, from the repository root (writes the git-ignored .gpu/: ml_collections and clu
# wheels, 0.2 MB, and MNIST as a compressed .npz, 11.5 MB):
#
#   python benchmarks/gpu_check.py --prepare
#
# then the device tool's run, with carry [".gpu"] and timeout_s 600 (the check takes about 9 minutes):
#
#   benchmarks/gpu_check.sh
#
# Its files come back from $OUT; commit them under experiments/results/gpu_<date>/ with this
# command and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import ml_collections, clu" 2>/dev/null && compgen -G ".gpu/whl/*.whl" >/dev/null; then
  # The device's Python lacks these two; their dependencies are there.
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/vdm_vae_site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/vdm_vae_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
