"""Attention forward and forward + backward times: vdm_vae's two impls and PyTorch's SDPA.

    python experiments/attention_speed.py [--batch=64] [--positions=784] [--channels=16,64]

Times softmax(q k^T / sqrt(C)) v on [batch, positions, channels] float32 inputs (the mid-block
attention of the U-Nets and of the encoder at 28 x 28), with the process settings of
`python -m vdm_vae.bench`, and PyTorch's scaled_dot_product_attention on as many threads as
this process may use, when torch is installed. Prints the median of --repeats calls in ms.
Run it on a quiet machine.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vdm_vae import cpu_env  # noqa: E402
from vdm_vae.bench import timed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--positions", type=int, default=784)
    p.add_argument("--channels", default="16,64", help="comma-separated channel counts")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    try:
        args.channels = [int(c) for c in args.channels.split(",")]
    except ValueError:
        p.error(f"--channels={args.channels!r} is invalid: expected comma-separated ints.")
    for name in ("batch", "positions", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} is invalid: expected an int >= 1.")
    if min(args.channels) < 1:
        p.error(f"--channels={args.channels} is invalid: expected positive ints.")
    return args


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in ms, after one warm-up call."""
    fn()
    return 1e3 * float(np.median(timed(fn, repeats)))


def _jax_times(q, k, v, impl: str, repeats: int) -> tuple:
    """(forward ms, forward + backward ms) of vdm_vae's attention `impl` on q, k, v."""
    import jax
    import jax.numpy as jnp

    from vdm_vae.attention import attention

    forward = jax.jit(lambda q, k, v: attention(q, k, v, impl))
    both = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v, impl) ** 2),
                            argnums=(0, 1, 2)))
    return (median_ms(lambda: jax.block_until_ready(forward(q, k, v)), repeats),
            median_ms(lambda: jax.block_until_ready(both(q, k, v)), repeats))


def jax_rows(args) -> list:
    import jax

    rows = []
    for c in args.channels:
        q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (args.batch, args.positions, c))
                   for i in range(3))
        for impl in ("batched", "per_example"):
            rows.append((f"vdm_vae {impl}", c) + _jax_times(q, k, v, impl, args.repeats))
    return rows


def _torch_times(torch, q, k, v, repeats: int) -> tuple:
    """(forward ms, forward + backward ms) of PyTorch's SDPA on q, k, v."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def forward():
        with torch.no_grad():
            sdpa(q, k, v)

    def both():
        (sdpa(q, k, v) ** 2).sum().backward()

    return median_ms(forward, repeats), median_ms(both, repeats)


def torch_rows(args) -> list:
    try:
        import torch
    except ImportError:
        print("torch is not installed: PyTorch's rows are left out.")
        return []
    torch.set_num_threads(cpu_env.available_cores())
    rows = []
    for c in args.channels:
        q, k, v = (torch.randn(args.batch, 1, args.positions, c, requires_grad=True)
                   for _ in range(3))
        rows.append(("torch sdpa", c) + _torch_times(torch, q, k, v, args.repeats))
    return rows


def report(args) -> str:
    """The timings of every impl and channel count, as a text table."""
    from vdm_vae.bench import cpu_name

    lines = [f"attention on [{args.batch}, {args.positions}, C] float32, {cpu_name()}, "
             f"{cpu_env.available_cores()} cores; median of {args.repeats} calls",
             f"{'impl':<22} {'C':>4} {'forward ms':>11} {'fwd+bwd ms':>11}"]
    for name, c, fwd, both in jax_rows(args) + torch_rows(args):
        lines.append(f"{name:<22} {c:>4} {fwd:>11.1f} {both:>11.1f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpu_env.reexec_with_cpu_settings()
    print(report(args))


if __name__ == "__main__":
    main()
