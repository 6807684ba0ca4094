"""GFLOP/s of one 64 -> 64 3x3 convolution at 28 x 28, batch 64, in each direction of a train
step (forward, input gradient, kernel gradient), in XLA or in PyTorch, best of 8 calls.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \
        python experiments/conv_directions.py jax     # the flag vdm_vae sets on CPU
    python experiments/conv_directions.py torch

Prints one JSON line. Each direction computes 2 * 64 * 784 * 9 * 64 * 64 FLOPs.
"""

import json
import sys

from vdm_vae.bench import timed

GFLOP = 2 * 64 * 784 * 9 * 64 * 64 / 1e9


def best_seconds(fn, repeats: int = 8) -> float:
    """Fastest of `repeats` calls of fn, after one warm-up call."""
    fn()
    return min(timed(fn, repeats))


def jax_rates() -> dict:
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 64))
    k = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 64, 64))
    g = jnp.ones((64, 28, 28, 64))

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    calls = {"forward": (jax.jit(conv), (x, k)),
             "input_gradient": (jax.jit(lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0]),
                                (x, k, g)),
             "kernel_gradient": (jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0]),
                                 (x, k, g))}
    return {name: GFLOP / best_seconds(lambda f=f, a=a: jax.block_until_ready(f(*a)))
            for name, (f, a) in calls.items()}


def torch_rates() -> dict:
    import torch

    x = torch.randn(64, 64, 28, 28, requires_grad=True)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    g = torch.ones(64, 64, 28, 28)
    y = conv(x)

    def forward():
        with torch.no_grad():
            conv(x)

    calls = {"forward": forward,
             "input_gradient": lambda: torch.autograd.grad(y, x, g, retain_graph=True),
             "kernel_gradient": lambda: torch.autograd.grad(y, conv.weight, g, retain_graph=True)}
    return {name: GFLOP / best_seconds(f) for name, f in calls.items()}


if __name__ == "__main__":
    library = sys.argv[1] if len(sys.argv) > 1 else ""
    if library not in ("jax", "torch"):
        sys.exit("usage: python experiments/conv_directions.py jax|torch")
    rates = jax_rates() if library == "jax" else torch_rates()
    print(json.dumps({"library": library, **{k: round(v, 1) for k, v in rates.items()}}))
