"""The kernel gradient of a 3x3 convolution, written seven ways in jax, timed on XLA:CPU.

    python experiments/kernel_gradient_forms.py --out /tmp/kernel_gradient_cpu.md
    python experiments/kernel_gradient_forms.py --quick      # tiny shapes: checks, no timing

For y = conv(x, k) ('SAME', stride 1; x [N, 28, 28, C], k [3, 3, C, C]) and an incoming
gradient g [N, 28, 28, C], the kernel gradient is

    dk[i, j, c, d] = sum over n, h, w of x_pad[n, h + i, w + j, c] * g[n, h, w, d],

2 * N * 784 * 9 * C * C FLOPs. It is the direction where XLA:CPU trails PyTorch most at the
U-Net widths of MVDM (16 channels) and TVDM (32): see the convolution table of
experiments/results/side_by_side_cpu.md. This script asks whether another formulation of the
same sum runs faster in XLA than the convolution XLA derives from jax's autodiff:

  xla               jax.vjp of lax.conv_general_dilated (what vdm_vae computes)
  nine_products     nine products x_pad[:, i:i+28, j:j+28]^T . g, one per tap
  im2col            one product: the [N*784, 9C] patches of x^T . g
  row_patches       the patches of the three taps of a row (3C wide), three products
  flat_offsets      x_pad flattened: each tap a contiguous slice at offset 30 i + j
  batch_groups      the sum over the batch split in 8 groups (vmap), the groups summed
  swapped_operands  one convolution with the channels of x as batch and N as features

and, where PyTorch is installed, PyTorch's kernel gradient of the same shape (the study's
library, on the same cores). Every form is checked against `xla` (largest difference relative
to the largest entry). Seconds are the best of --repeats calls after 0.3 s of calls, with
vdm_vae's CPU settings (vdm_vae/cpu_env.py); one JSON line per shape, and with --out a
markdown table.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (N, C): per-device and whole batches at the grid's U-Net and encoder widths
SHAPES = ((64, 16), (32, 16), (64, 32), (32, 32), (64, 64))
QUICK_SHAPES = ((8, 3), (3, 4))  # 8: batch_groups splits it
GROUPS = 8


def forms(size: int):
    """name -> fn(x [N, S, S, C], g [N, S, S, D]) -> dk [3, 3, C, D], for images S x S."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def pad(x):
        return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def xla(x, g):
        k = jnp.zeros((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
        return jax.vjp(lambda k: conv(x, k), k)[1](g)[0]

    def nine_products(x, g):
        xp = pad(x)
        return jnp.stack([jnp.stack([jnp.einsum("nhwc,nhwd->cd", xp[:, i:i + size, j:j + size], g)
                                     for j in range(3)]) for i in range(3)])

    def im2col(x, g):
        xp = pad(x)
        patches = jnp.concatenate([xp[:, i:i + size, j:j + size] for i in range(3)
                                   for j in range(3)], axis=-1)
        dk = patches.reshape(-1, patches.shape[-1]).T @ g.reshape(-1, g.shape[-1])
        return dk.reshape(3, 3, x.shape[-1], g.shape[-1])

    def row_patches(x, g):
        xp = pad(x)
        rows = jnp.concatenate([xp[:, :, j:j + size] for j in range(3)], axis=-1)
        dk = jnp.stack([jnp.einsum("nhwc,nhwd->cd", rows[:, i:i + size], g) for i in range(3)])
        return dk.reshape(3, 3, x.shape[-1], g.shape[-1])

    def flat_offsets(x, g):
        width = size + 2
        xp = pad(x).reshape(-1, x.shape[-1])
        xp = jnp.pad(xp, ((0, 2 * width + 2), (0, 0)))
        gp = jnp.pad(g, ((0, 0), (0, 2), (0, 2), (0, 0))).reshape(-1, g.shape[-1])
        n = gp.shape[0]
        return jnp.stack([jnp.stack([lax.dynamic_slice_in_dim(xp, i * width + j, n).T @ gp
                                     for j in range(3)]) for i in range(3)])

    def batch_groups(x, g):
        groups = GROUPS if x.shape[0] % GROUPS == 0 else 1

        def split(a):
            return a.reshape((groups, -1) + a.shape[1:])

        return jax.vmap(xla)(split(x), split(g)).sum(0)

    def swapped_operands(x, g):
        dk = lax.conv_general_dilated(pad(x), g, (1, 1), "VALID",
                                      dimension_numbers=("CHWN", "IHWO", "NHWC"))
        return dk.transpose(1, 2, 0, 3)

    return {"xla": xla, "nine_products": nine_products, "im2col": im2col,
            "row_patches": row_patches, "flat_offsets": flat_offsets,
            "batch_groups": batch_groups, "swapped_operands": swapped_operands}


def torch_kernel_gradient_s(n: int, c: int, repeats: int) -> float:
    """Seconds of PyTorch's kernel gradient for x [n, 28, 28, c] -> c channels."""
    from conv_floor import torch_seconds

    conv = {"input": [n, 28, 28, c], "kernel": [3, 3, c, c], "strides": [1, 1],
            "padding": [[1, 1], [1, 1]], "directions": ["kernel_gradient"]}
    return torch_seconds(conv, repeats, warm_s=0.3)["kernel_gradient"]


def measure(n: int, c: int, size: int, repeats: int, time_them: bool) -> dict:
    """One shape: each form's relative difference from `xla` and, if timed, its seconds."""
    import jax
    import numpy as np
    from conv_floor import best_seconds

    x = jax.random.normal(jax.random.PRNGKey(1), (n, size, size, c))
    g = jax.random.normal(jax.random.PRNGKey(2), (n, size, size, c))
    row = {"n": n, "channels": c, "image": size, "gflop": 2 * n * size * size * 9 * c * c / 1e9,
           "forms": {}}
    reference = None
    for name, form in forms(size).items():
        fn = jax.jit(form)
        dk = np.asarray(fn(x, g))
        if reference is None:
            reference = dk
        entry = {"relative_difference": float(np.abs(dk - reference).max()
                                              / np.abs(reference).max())}
        if time_them:
            entry["seconds"] = best_seconds(lambda fn=fn: jax.block_until_ready(fn(x, g)),
                                            repeats, warm_s=0.3)
        row["forms"][name] = entry
    if time_them:
        try:
            row["torch_s"] = torch_kernel_gradient_s(n, c, repeats)
        except ImportError:
            row["torch_s"] = None
    return row


def markdown(rows: list, command: str, machine: str) -> str:
    names = list(rows[0]["forms"])
    head = ("| N | channels | GFLOP | " + " | ".join(names) + " | PyTorch |\n"
            + "|---" * (len(names) + 4) + "|\n")
    lines = []
    for r in rows:
        cells = [f"{1e3 * r['forms'][k]['seconds']:.2f}" for k in names]
        torch_ms = f"{1e3 * r['torch_s']:.2f}" if r.get("torch_s") else "-"
        lines.append(f"| {r['n']} | {r['channels']} | {r['gflop']:.3f} | " + " | ".join(cells)
                     + f" | {torch_ms} |")
    worst = max(f["relative_difference"] for r in rows for f in r["forms"].values())
    return (f"# The kernel gradient of a 3x3 convolution, seven ways in XLA, CPU\n\n"
            f"Command, from the repository root: `{command}`\n\n"
            f"Machine: {machine}. Images 28 x 28, C -> C channels. Milliseconds, best of the "
            f"calls after 0.3 s of calls (the formulations: the script's docstring). Largest "
            f"difference of any form from `xla`, relative to the largest entry: {worst:.1e}.\n\n"
            + head + "\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny shapes, no timing")
    p.add_argument("--out", help="also write a markdown table here")
    args = p.parse_args(argv)
    if not args.quick:
        from vdm_vae.cpu_env import reexec_with_cpu_settings

        reexec_with_cpu_settings()
    from vdm_vae.bench import platform_info

    shapes = QUICK_SHAPES if args.quick else SHAPES
    rows = []
    for n, c in shapes:
        rows.append(measure(n, c, 6 if args.quick else 28, args.repeats, not args.quick))
        print(json.dumps(rows[-1]), flush=True)
    if args.out and not args.quick:
        info = platform_info()
        machine = (f"{info['cpu']}, {info['cores']} cores, {time.strftime('%Y-%m-%d')}, "
                   f"jax {info['jax']}")
        if any(r.get("torch_s") for r in rows):
            import torch

            machine += f", torch {torch.__version__} with {torch.get_num_threads()} threads"
        command = "python experiments/kernel_gradient_forms.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:]))
        with open(args.out, "w") as f:
            f.write(markdown(rows, command.strip(), machine))
    return rows


if __name__ == "__main__":
    main()
