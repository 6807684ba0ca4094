"""GFLOP/s of one 64 -> 64 3x3 convolution at 28 x 28, batch 64, in each direction of a train
step (forward, input gradient, kernel gradient), in XLA or in PyTorch, best of 8 calls.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \
        python experiments/conv_directions.py jax     # the flag vdm_vae sets on CPU
    python experiments/conv_directions.py torch

Prints one JSON line. Each direction computes 2 * 64 * 784 * 9 * 64 * 64 FLOPs. The timers
are experiments/conv_floor.py's, on its calibration convolution.
"""

import json
import sys

from conv_floor import CALIBRATION, jax_seconds, torch_seconds  # this folder, on sys.path

GFLOP = 2 * 64 * 784 * 9 * 64 * 64 / 1e9


if __name__ == "__main__":
    library = sys.argv[1] if len(sys.argv) > 1 else ""
    if library not in ("jax", "torch"):
        sys.exit("usage: python experiments/conv_directions.py jax|torch")
    timer = jax_seconds if library == "jax" else torch_seconds
    seconds = timer(CALIBRATION, repeats=8, warm_s=0.0)
    print(json.dumps({"library": library, **{d: round(GFLOP / s, 1) for d, s in seconds.items()}}))
