"""Base config: every field of a run (data / model / training / optimizer / eval).

Architecture files call `make(vdm=..., encoder=..., arg=...)` and override only what differs.
Any config accepts `:smoke` (e.g. `--config=configs/svdm_oe.py:smoke`), which shrinks widths,
batch, data and steps so it runs end to end in seconds on a CPU.
"""

import ml_collections

from vdm_vae.model.config import ModelConfig, model_config_to_dict

# name -> (sm_n_layer, sm_n_embd): the study's VDM sizes and google-research/vdm's CIFAR-10 net.
VDM_SIZES = {"svdm": (16, 64), "tvdm": (8, 32), "mvdm": (4, 16), "vdm": (32, 128)}

# name -> (block_out_channels, layers_per_block, norm_num_groups, w_dim, beta).
# "ue" is the study's unregularised encoder: OE trained without the KL of w (beta = 0).
ENCODERS = {
    "oepp": (64, 2, 32, 256, 1.0),
    "oe": (64, 2, 32, 128, 1.0),
    "se": (32, 1, 16, 128, 1.0),
    "te": (16, 1, 8, 128, 1.0),
    "ue": (64, 2, 32, 128, 0.0),
}


def d(**kwargs) -> ml_collections.ConfigDict:
    """Shorthand for a ConfigDict."""
    return ml_collections.ConfigDict(kwargs)


# Where the study's MNIST models differ from ModelConfig's defaults (google-research/vdm's
# CIFAR-10 model): a fixed linear schedule, no Fourier features, clipped samples, narrower nets.
STUDY_MODEL = dict(gamma_type="fixed", with_fourier_features=False, clip_samples=True,
                   sm_n_embd=64, sm_n_layer=16, sm_norm_groups=8)


def _tuples(value):
    """Lists (JSON's tuples) back to tuples, in nested dicts too."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(value) if isinstance(value, list) else value


def model_fields() -> ml_collections.ConfigDict:
    """config.model with ModelConfig's defaults, their one source (image_shape comes from the
    data; w_min_gamma is a float placeholder so that a flag can set it)."""
    fields = _tuples(model_config_to_dict(ModelConfig()))
    del fields["image_shape"]
    fields["w_min_gamma"] = ml_collections.config_dict.placeholder(float)
    return ml_collections.ConfigDict(fields)


def base_config() -> ml_collections.ConfigDict:
    """All fields, with the study's MNIST defaults (beta = 1, a true ELBO)."""
    config = ml_collections.ConfigDict()
    config.name = "base"
    config.data = d(source="mnist", name="", path="", synthetic_shape=(28, 28, 1),
                    synthetic_train=256, synthetic_test=64)
    config.model = model_fields()
    config.model.update(STUDY_MODEL)
    config.training = d(
        seed=1, batch_size_train=64, batch_size_eval=64, num_steps_train=100_000,
        substeps=0,  # optimiser steps per call; 0: per platform (vdm_vae/cpu/platforms.py)
        beta_warmup_fraction=0.0,
        steps_per_logging=100, steps_per_eval=5_000, steps_per_save=1_000,
        checkpoints_to_keep=3, num_eval_batches=20,
        # Also keep the steps that are multiples of this (0 = off), for comparisons at equal steps.
        checkpoints_keep_period=0,
        # Stop (saved, not finished) at this step of the num_steps_train schedule (0 = off):
        # a pilot follows the full run's learning-rate schedule for its first steps.
        stop_at_step=0,
        eval_num_samples=64, eval_sample_steps=250,
        # Also write TensorBoard event files (CLU's writer, when TensorFlow is installed;
        # importing TensorFlow adds seconds to every start). metrics.jsonl is always written.
        tensorboard=True,
        # The periodic evaluation's linear probe on mu(x): first images of each split (0 = off).
        curve_probe_train=2000, curve_probe_test=1000,
        # Batches placed on the devices ahead of the step that takes them (0 = off), and
        # checkpoints written while training goes on (the loop waits only for a host copy).
        prefetch_batches=2, async_checkpoints=True,
    )
    config.optimizer = d(
        name="adamw", learning_rate=2e-4, lr_warmup_steps=100, lr_decay=False,
        b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.01, gradient_clip_norm=1.0, ema_rate=0.9999,
        ema_warmup_power=0.75,  # decay min(0.9999, 1 - (1 + step)^-0.75), as the study's EMA
        # Weight decay skips leaves with these names and these top-level modules: biases,
        # GroupNorm scales and the noise schedule. google-research/vdm's own mask amounts
        # to no_decay_leaves=("bias",), no_decay_modules=().
        no_decay_leaves=("bias", "scale"), no_decay_modules=("gamma",),
    )
    config.eval = d(num_test_images=-1, mc_draws=1, num_fid_samples=10_000, sample_steps=250,
                    fid_batch_size=250, num_probe_train=-1)
    return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks any config to a seconds-long CPU run (same code paths, tiny sizes)."""
    config.name += ":smoke"
    channels = 3 if config.data.name == "cifar10" else 1
    config.data = d(source="synthetic", name="", path="", synthetic_shape=(8, 8, channels),
                    synthetic_train=64, synthetic_test=16)
    config.model.sm_n_layer = min(config.model.sm_n_layer, 1)
    config.model.sm_n_embd = 8
    config.model.sm_norm_groups = 4
    enc = config.model.encoder
    enc.block_out_channels, enc.layers_per_block, enc.norm_num_groups = 8, 1, 4
    enc.w_dim = min(enc.w_dim, 8)
    # 56 samples: the size of the guided grid (8 test images x 7), so that both grids of an
    # evaluation share one compiled sampler.
    config.training.update(batch_size_train=8, batch_size_eval=8, num_steps_train=2,
                           steps_per_logging=1, steps_per_eval=2, steps_per_save=1,
                           num_eval_batches=1, eval_num_samples=56, eval_sample_steps=2,
                           curve_probe_train=32, curve_probe_test=16)
    config.eval.update(num_test_images=16, num_fid_samples=0, sample_steps=2,
                       num_probe_train=64)
    return config


def make(vdm: str, encoder: str = "none", dataset: str = "mnist", arg: str = None
         ) -> ml_collections.ConfigDict:
    """A config of the study's grid: VDM size x encoder (or "none") on mnist or cifar10."""
    config = base_config()
    config.name = vdm if encoder == "none" else f"{vdm}_{encoder}"
    config.model.sm_n_layer, config.model.sm_n_embd = VDM_SIZES[vdm]
    if encoder != "none":
        ch, layers, groups, w_dim, beta = ENCODERS[encoder]
        config.model.encoder.update(kind="conv", block_out_channels=ch, layers_per_block=layers,
                                    norm_num_groups=groups, w_dim=w_dim)
        config.model.loss.beta = beta
    if dataset == "cifar10":
        config.name += "_cifar10"
        config.data.update(source="tfds", name="cifar10")
    elif dataset != "mnist":
        raise ValueError(f"dataset {dataset!r} is unknown: expected 'mnist' or 'cifar10'.")
    return finish(config, arg)


def finish(config: ml_collections.ConfigDict, arg: str = None) -> ml_collections.ConfigDict:
    """Applies the config-string argument: None / "" (full run) or "smoke"."""
    if arg == "smoke":
        return smoke(config)
    if arg not in (None, ""):
        raise ValueError(f"config argument {arg!r} is unknown: expected nothing or 'smoke'.")
    return config
