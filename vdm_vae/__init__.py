"""vdm_vae: a VAE whose decoder is a conditional Variational Diffusion Model.

The public names below load their modules (and jax) on first use, so that a command can
start, check its flags and restart itself with its CPU settings (`vdm_vae.cpu.env`) before
paying for jax's import.
"""

import importlib

_PUBLIC = {
    "load": ("vdm_vae.pretrained", "load"),
    "VDMVAE": ("vdm_vae.model.vae", "VDMVAE"),
    "VAEOutput": ("vdm_vae.model.vae", "VAEOutput"),
    "init": ("vdm_vae.model.vae", "init_params"),
    "EncoderConfig": ("vdm_vae.model.config", "EncoderConfig"),
    "LossConfig": ("vdm_vae.model.config", "LossConfig"),
    "ModelConfig": ("vdm_vae.model.config", "ModelConfig"),
    "encode": ("vdm_vae.sampling", "encode"),
    "sample": ("vdm_vae.sampling", "sample"),
    "encode_to_noise": ("vdm_vae.sampling", "encode_to_noise"),
    "decode_from_noise": ("vdm_vae.sampling", "decode_from_noise"),
    "load_fitted_prior": ("vdm_vae.pretrained", "load_fitted_prior"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'vdm_vae' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
