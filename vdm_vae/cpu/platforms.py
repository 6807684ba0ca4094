"""The automatic choices that depend on the platform jax computes on, in one place.

Several formulations in this package compute the same numbers as the plain ones and exist only
because XLA:CPU runs them faster. On GPUs and TPUs the plain forms, those of flax and jax,
are used instead: they are what those compilers are tuned for, and none of the CPU forms has
been measured there.

| choice | on CPU | elsewhere |
|---|---|---|
| process settings (vdm_vae/cpu/env.py) | huge pages, XLA's own convolutions, 2 devices | none |
| train batch split over (train.py, bench.py) | 2 devices below 64 U-Net channels, else 1 | all |
| `model.attention_impl="auto"` (attention.py) | per_example, recomputed | batched |
| Dense kernel gradient (layers.py) | x^T g, custom VJP | jax's autodiff |
| an up block's (h, skip) (layers.py, group_norm.py) | one product per part | concatenated once |
| dropout masks (dropout.py) | unrolled threefry, fused | jax.random.bernoulli |
| `training.substeps=0` (train.py, bench.py) | 1 (no scan) | 4 per call, in a lax.scan |

Both columns give the same results up to the order of float additions (the dropout masks
bit for bit); tests/test_platforms.py checks each choice on both sides by patching `backend`.
"""

from typing import Iterable, Sequence

import jax

# On CPU, U-Nets narrower than this split a batch over cpu_env's 2 devices. Train step, batch
# 64, 2 AMD EPYC cores, median of 8 steps, one device -> two, in runs that alternated
# `python benchmarks/bench.py --no-calibrate --sizes S --encoders E` with and without
# --xla_force_host_platform_device_count=2 in XLA_FLAGS (2-6 rounds; SVDM one):
# MVDM 0.456-0.468 -> 0.445-0.450 s, TVDM 1.58-1.77 -> 1.36-1.72 s,
# MVDM + OE 1.40-1.65 -> 1.33-1.49 s, TVDM + OE 2.46-2.61 -> 2.25-2.27 s (their many small
# operations leave a core idle; two half-batches fill it). SVDM's 64-channel convolutions
# fill both cores already and two at once contend: SVDM 8.76 -> 8.63 s, SVDM + OE 9.72 ->
# 10.29 s.
SPLIT_BELOW_CHANNELS = 64

# Optimiser steps per call off CPU: a lax.scan over them saves host round trips. On XLA:CPU
# the convolution weight gradients run much slower inside a scan body, so CPU takes 1.
ACCELERATOR_SUBSTEPS = 4


def backend() -> str:
    """The platform of jax's default backend: "cpu", "gpu" or "tpu"."""
    return jax.default_backend()


def cpu_formulations() -> bool:
    """True where the CPU formulations of the table above apply (XLA:CPU)."""
    return backend() == "cpu"


def resolve_substeps(substeps: int, intervals: Iterable[int] = ()) -> int:
    """config.training.substeps, with 0 meaning the platform's choice.

    Args:
      substeps: the config's value; > 0 is returned unchanged.
      intervals: step counts that a call must not step over (logging, saving, evaluation,
        the total); the platform's choice is reduced to the largest divisor of
        ACCELERATOR_SUBSTEPS that divides them all.
    Returns:
      Optimiser steps per call of the train step.
    """
    if substeps < 0:
        raise ValueError(f"substeps={substeps} is invalid: expected 0 (per platform) or more.")
    if substeps:
        return substeps
    if cpu_formulations():
        return 1
    intervals = tuple(intervals)
    return max(s for s in range(1, ACCELERATOR_SUBSTEPS + 1)
               if ACCELERATOR_SUBSTEPS % s == 0 and all(n % s == 0 for n in intervals))


def local_train_devices(batch_sizes: Sequence[int], unet_channels: int) -> int:
    """Local devices the train and eval steps split their batches over.

    All of them, except on CPU in a single process, where the devices are vdm_vae/cpu/env.py's
    split of the cores: there a U-Net narrower than SPLIT_BELOW_CHANNELS channels (MVDM, TVDM)
    splits each batch over them, and a wider one (SVDM) runs on one (see SPLIT_BELOW_CHANNELS);
    where their count does not divide every batch size, the largest count that does (1 at
    least). Results are the same up to float order. Elsewhere a batch that the devices do not
    divide is the config's error (vdm_vae.data.check_batch_size says so).
    """
    devices = jax.local_device_count()
    if not cpu_formulations() or jax.process_count() > 1:
        return devices
    if unet_channels >= SPLIT_BELOW_CHANNELS:
        return 1
    return max(d for d in range(1, devices + 1) if all(b % d == 0 for b in batch_sizes))
