"""The time of a row's train step without its convolutions: the rest of the step, as XLA runs it.

    python experiments/step_without_convs.py --size mvdm --encoder oe [--repeats 5]

Builds the row's train step as `python -m vdm_vae.bench` does (same settings of the process,
batch 64, 28x28x1), but with every `lax.conv_general_dilated` it traces replaced by a stand-in
that does none of a convolution's work: it reads one element of each operand and broadcasts
their product to the convolution's output shape, so its gradients are two sums over the
output's cotangent. Everything else (GroupNorm, activations, attention, Dense layers, the loss,
the optimiser, the EMA, copies) is the step's own. Prints one JSON line with the median and
minimum seconds of the step without convolutions, after compiling and one warm-up call.

This is a measurement of the rest of the step as XLA compiles it, not a floor: without the
convolutions' outputs XLA may fuse or simplify work the real step must do (a GroupNorm of a
broadcast reads no tensor), so the rest of the real step takes at least about this long.
experiments/side_by_side.py adds it to the step's convolutions timed alone
(experiments/conv_floor.py).
"""

import argparse
import contextlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conv_stand_in(real_conv):
    """A function with lax.conv_general_dilated's signature and output that does none of its
    work: the product of one element of each operand, broadcast to the output's shape."""
    import jax
    import jax.numpy as jnp

    def stand_in(lhs, rhs, *args, **kwargs):
        out = jax.eval_shape(lambda a, b: real_conv(a, b, *args, **kwargs), lhs, rhs)
        one = lhs.reshape(-1)[0] * rhs.reshape(-1)[0]
        return jnp.broadcast_to(one, out.shape).astype(out.dtype)

    return stand_in


@contextlib.contextmanager
def without_convolutions():
    """While active, jax.lax.conv_general_dilated is the stand-in (flax's nn.Conv and
    vdm_vae.layers look it up at call time); a program traced inside keeps it."""
    import jax

    real = jax.lax.conv_general_dilated
    jax.lax.conv_general_dilated = conv_stand_in(real)
    try:
        yield
    finally:
        jax.lax.conv_general_dilated = real


def time_rest(size: str, encoder: str, repeats: int, batch: int = 64,
              smoke: bool = False) -> dict:
    """Median and minimum seconds of the row's train step without its convolutions, timed as
    `vdm_vae.bench.bench_train` times the real one."""
    from vdm_vae import bench
    from vdm_vae.platforms import resolve_substeps

    args = argparse.Namespace(smoke=smoke, batch=batch, repeats=repeats,
                              substeps=resolve_substeps(0))
    model_config, config = bench._configs(size, encoder, "float32", args)
    with without_convolutions():
        timed = bench.bench_train(model_config, config, args)
    return {"size": size, "encoder": encoder, "batch": batch, "substeps": args.substeps,
            "rest_step_median_s": timed["train_step_median_s"],
            "rest_step_min_s": timed["train_step_min_s"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", required=True, choices=("mvdm", "tvdm", "svdm"))
    p.add_argument("--encoder", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="the configs' tiny smoke sizes")
    args = p.parse_args(argv)
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} is invalid: expected an int >= 1.")
    from vdm_vae import cpu_env

    cpu_env.reexec_with_cpu_settings()
    print(json.dumps(time_rest(args.size, args.encoder, args.repeats, args.batch, args.smoke)),
          flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
