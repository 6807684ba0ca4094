"""The MNIST CPU protocol (experiments/mnist_cpu.sh, docs/mnist_cpu.md): what learns most per
CPU-hour, and its variants, each one flat set of changes to one of two runs.

  --config=configs/mnist_cpu.py                 the main encoder run
  --config=configs/mnist_cpu.py:uncond          its unconditional reference
  --config=configs/mnist_cpu.py:c30_w128        a variant (VARIANTS below)
  --config=configs/mnist_cpu.py:mmd,seed2       a variant with training.seed = 2
  --config=configs/mnist_cpu.py:uncond,smoke    seconds-long check of the same code paths

The argument is comma-separated words: at most one variant name, `seed<N>` and `smoke`.
A run is named `mnist_cpu[_<variant>][_seed<N>]` (seed 1, the published one, unnamed), and
`mnist_cpu_<variant>_seed<N>` is also accepted as the argument `<variant>_seed<N>`, so a run's
name always resolves to the config that made it.

Both runs: multi-resolution score U-Net (32 channels at 28 x 28, 64 at 14 x 14 and 7 x 7, 2
blocks per level, Fourier features, no dropout), batch 64, AdamW peak lr 2e-3 decayed linearly
to 0 over 5,000 steps (experiments/results/mnist_cpu_pilots.md), the bound at beta = 1. The
main run adds a small encoder that downsamples likewise to 7 x 7 (w_dim 32), a capacity target
of 10 nats on the KL of w (the objective uses |KL - 10|; the reported bpd stays the full bound
at weight 1) and a score U-Net that sees w only where gamma_t >= 0 (SNR <= 1), where the noise
hides the digit's global shape. 5,000 steps: about 3 hours of one core.
"""

import re

import ml_collections

from configs import base

MAIN = "main"
# name -> (what it is, the run it changes, {dotted field: value}). No variant builds on another.
VARIANTS = {
    MAIN: ("encoder, 10-nat capacity target, w seen at SNR <= 1", MAIN, {}),
    "uncond": ("the unconditional reference: no encoder", None, {}),
    "uncond_10k": ("the unconditional reference trained for 10,000 steps", None,
                   {"training.num_steps_train": 10_000}),
    "ungated": ("the capacity target alone: w seen at every SNR", MAIN,
                {"model.w_min_gamma": None}),
    "b1": ("plain ELBO: no capacity target, w at every SNR", MAIN,
           {"model.w_min_gamma": None, "model.loss.capacity": 0.0}),
    "b1e4": ("the study's KL weight 10^4, w at every SNR", MAIN,
             {"model.w_min_gamma": None, "model.loss.capacity": 0.0, "model.loss.beta": 1e4}),
    "mmd": ("plus an MMD penalty (weight 1) between the codes and N(0, I)", MAIN,
            {"model.loss.mmd_weight": 1.0}),
    "g2": ("w seen only where gamma_t >= 2", MAIN, {"model.w_min_gamma": 2.0}),
    "c30": ("30-nat capacity target", MAIN, {"model.loss.capacity": 30.0}),
    "c30_10k": ("30-nat target, 10,000 steps", MAIN,
                {"model.loss.capacity": 30.0, "training.num_steps_train": 10_000}),
    "c30_mix10": ("30-nat target, a 10-component mixture prior learned with the model", MAIN,
                  {"model.loss.capacity": 30.0, "model.w_prior_components": 10}),
    "c30_w128": ("30-nat target, 128-dimensional w", MAIN,
                 {"model.loss.capacity": 30.0, "model.encoder.w_dim": 128}),
    "c30_w128_10k": ("30-nat target, 128-dimensional w, 10,000 steps", MAIN,
                     {"model.loss.capacity": 30.0, "model.encoder.w_dim": 128,
                      "training.num_steps_train": 10_000}),
    "c30_w128_d2": ("30-nat target, 128-dimensional w, two layers per encoder block", MAIN,
                    {"model.loss.capacity": 30.0, "model.encoder.w_dim": 128,
                     "model.encoder.layers_per_block": 2}),
    "c30_w512": ("30-nat target, 512-dimensional w", MAIN,
                 {"model.loss.capacity": 30.0, "model.encoder.w_dim": 512}),
    "c60_w128": ("60-nat target, 128-dimensional w", MAIN,
                 {"model.loss.capacity": 60.0, "model.encoder.w_dim": 128}),
    "c60_w128_d2": ("60-nat target, 128-dimensional w, two layers per encoder block", MAIN,
                    {"model.loss.capacity": 60.0, "model.encoder.w_dim": 128,
                     "model.encoder.layers_per_block": 2}),
    "joint": ("a w-space VDM prior learned with the model, no capacity target", MAIN,
              {"model.w_prior_vdm": True, "model.loss.capacity": 0.0}),
    "joint_c10": ("a w-space VDM prior learned with the model, with the 10-nat target", MAIN,
                  {"model.w_prior_vdm": True}),
    "joint_w128": ("a w-space VDM prior learned with the model, 128-dimensional w, no target",
                   MAIN, {"model.w_prior_vdm": True, "model.loss.capacity": 0.0,
                          "model.encoder.w_dim": 128}),
    "film": ("w also scales and shifts each score block's GroupNorm (AdaGN)", MAIN,
             {"model.w_film": True}),
    "joint_film": ("the learned w-space VDM prior and AdaGN, no capacity target", MAIN,
                   {"model.w_prior_vdm": True, "model.loss.capacity": 0.0,
                    "model.w_film": True}),
}


def unconditional() -> ml_collections.ConfigDict:
    """The protocol's decoder and optimisation, no encoder."""
    config = base.base_config()
    config.model.update(sm_ch_mult=(1, 2, 2), sm_n_embd=32, sm_n_layer=2, sm_norm_groups=8,
                        with_fourier_features=True, sm_pdrop=0.0)
    config.training.update(num_steps_train=5_000, steps_per_logging=50, steps_per_eval=500,
                           steps_per_save=250, checkpoints_keep_period=500,
                           eval_num_samples=36, eval_sample_steps=100)
    config.optimizer.update(learning_rate=2e-3, lr_warmup_steps=200, lr_decay=True)
    config.eval.update(num_fid_samples=5_000, sample_steps=250)
    return config


def main_run() -> ml_collections.ConfigDict:
    """The main encoder run: unconditional() plus the encoder, capacity and gate."""
    config = unconditional()
    config.model.encoder.update(kind="conv", block_out_channels=32, channel_mult=(1, 2, 2),
                                layers_per_block=1, norm_num_groups=8, out_channels=16,
                                w_dim=32)
    config.model.loss.capacity = 10.0
    config.model.w_min_gamma = 0.0
    return config


def parse_arg(arg) -> tuple:
    """`arg` -> (variant, seed, smoke); one-line ValueError naming what is accepted."""
    variant, seed, smoke = MAIN, 1, False
    for word in (arg or "").split(","):
        match = re.fullmatch(r"(?:(.*?)_)?seed(\d+)", word)
        if match:
            word, seed = match.group(1) or "", int(match.group(2))
        if word == "smoke":
            smoke = True
        elif word:
            if word not in VARIANTS or variant != MAIN:
                raise ValueError(
                    f"configs/mnist_cpu.py argument {arg!r}: {word!r} is not one variant; "
                    f"expected one of {', '.join(VARIANTS)}, seed<N> and smoke, by commas.")
            variant = word
    return variant, seed, smoke


def run_name(variant: str, seed: int = 1) -> str:
    """`mnist_cpu[_<variant>][_seed<N>]`: the workdir name of a run of this protocol."""
    name = "mnist_cpu" + ("" if variant == MAIN else f"_{variant}")
    return name + ("" if seed == 1 else f"_seed{seed}")


def get_config(arg=None):
    variant, seed, smoke = parse_arg(arg)
    _, start, changes = VARIANTS[variant]
    config = main_run() if start == MAIN else unconditional()
    for field, value in changes.items():
        *path, key = field.split(".")
        node = config
        for part in path:
            node = node[part]
        node[key] = value
    config.training.seed = seed
    config.name = run_name(variant, seed)
    return base.smoke(config) if smoke else config
