"""Public sampling and encoding: one jitted fori_loop over the reverse steps."""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.model.config import ModelConfig
from vdm_vae.model.vae import VDMVAE
from vdm_vae.runtime.progress import Progress


def as_variables(params) -> dict:
    """Accepts {'params': tree} (as from `init`) or the bare tree."""
    if isinstance(params, dict) and set(params) == {"params"}:
        return params
    return {"params": params}


def check_images(images, config: ModelConfig, name: str = "images") -> jax.Array:
    """Validates integer images [B,H,W,C] against the config; raises ValueError otherwise."""
    dtype = getattr(images, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer (uint8) array of pixels in "
                         f"[0, {config.vocab_size - 1}], got dtype {dtype}.")
    if images.ndim != 4:
        raise ValueError(f"{name} must have rank 4 [B,H,W,C], got shape {tuple(images.shape)}.")
    if tuple(images.shape[1:]) != tuple(config.image_shape):
        raise ValueError(f"{name} has per-image shape {tuple(images.shape[1:])}, but the model "
                         f"expects (H, W, C) = {tuple(config.image_shape)}.")
    if not isinstance(images, jax.core.Tracer) and images.size:
        lo, hi = int(np.min(images)), int(np.max(images))
        if lo < 0 or hi >= config.vocab_size:
            raise ValueError(f"{name} values span [{lo}, {hi}], expected [0, "
                             f"{config.vocab_size - 1}].")
    return jnp.asarray(images)


def check_w(w, config: ModelConfig, batch: Optional[int] = None) -> Optional[jax.Array]:
    """Validates w [B, w_dim] (None for an unconditional model)."""
    if not config.conditional:
        if w is not None:
            raise ValueError("w must be None for an unconditional model (encoder.kind='none'), "
                             f"got shape {tuple(np.shape(w))}.")
        return None
    shape = tuple(np.shape(w)) if w is not None else None
    if shape is None or len(shape) != 2 or shape[1] != config.w_dim:
        raise ValueError(f"w must have shape [B, {config.w_dim}] (w_dim), got {shape}.")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"w has batch {shape[0]}, expected {batch}.")
    if not isinstance(w, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(w))):
        bad = int(np.size(w) - np.sum(np.isfinite(np.asarray(w))))
        raise ValueError(f"w has {bad} non-finite values (NaN or inf): expected finite codes.")
    return jnp.asarray(w, jnp.float32)


@functools.partial(jax.jit, static_argnames=("config", "start", "stop", "num_steps"))
def reverse_steps(params, z: jax.Array, w: Optional[jax.Array], rng: jax.Array, *,
                  config: ModelConfig, num_steps: int, start: int, stop: int,
                  images: Optional[jax.Array] = None) -> jax.Array:
    """Runs reverse steps i in [start, stop) of T = num_steps: z_{t(start)} -> z_{t(stop)}."""
    model = VDMVAE(config)

    def body(i, z_t):
        return model.apply(params, i, num_steps, z_t, w, jax.random.fold_in(rng, i), images,
                           method=VDMVAE.reverse_step)

    return jax.lax.fori_loop(start, stop, body, z)


@functools.partial(jax.jit, static_argnames=("config",))
def decode_z0(params, z_0: jax.Array, rng: jax.Array, *, config: ModelConfig) -> jax.Array:
    """z_0 [B,H,W,C] -> uint8 pixels [B,H,W,C]."""
    x = VDMVAE(config).apply(params, z_0, rng, method=VDMVAE.generate_x)
    return x.astype(jnp.uint8)


def sample(params, w: Optional[jax.Array] = None, *, config: ModelConfig, rng: jax.Array,
           num_steps: int = 250, num_samples: Optional[int] = None,
           images: Optional[jax.Array] = None, fitted_prior=None) -> jax.Array:
    """Ancestral samples of p(x|w), uint8 [B,H,W,C].

    Args:
      params: model parameters (EMA params from `load`, or variables from `init`).
      w: [B, w_dim] codes, e.g. from `encode` for guided generation. None: drawn from the
        model's prior, N(0, I) or its learned mixture (or from fitted_prior), for fully generative
        samples; always None for an unconditional model. With w None, give num_samples.
      config: the model's ModelConfig.
      rng: PRNG key; the same key gives the same images.
      num_steps: T reverse steps.
      num_samples: batch size when w is None.
      images: guide images for a time-conditioned encoder (w is then recomputed at each t).
      fitted_prior: (params, PriorConfig) of a prior fitted after training
        (`vdm_vae.load_fitted_prior`); with w None
        and num_samples set, w is drawn from it instead of N(0, I).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps}.")
    variables = as_variables(params)
    if images is not None:
        images = check_images(images, config)
        batch = images.shape[0]
    elif w is not None:
        batch = np.shape(w)[0]
    elif num_samples is not None:
        batch = num_samples
    else:
        raise ValueError("sample needs w [B, w_dim], num_samples (unconditional) or images.")
    rng_z, rng_steps, rng_x = jax.random.split(rng, 3)
    if w is None and images is None and config.conditional:
        w = draw_prior_w(variables, config, batch, jax.random.fold_in(rng, 7), fitted_prior)
    w = None if images is not None else check_w(w, config, batch)
    z = jax.random.normal(rng_z, (batch,) + tuple(config.image_shape))
    z = reverse_steps(variables, z, w, rng_steps, config=config, num_steps=num_steps,
                      start=0, stop=num_steps, images=images)
    return decode_z0(variables, z, rng_x, config=config)


def draw_prior_w(params, config: ModelConfig, num: int, rng: jax.Array,
                 fitted_prior=None) -> jax.Array:
    """w [num, w_dim] from the model's prior (N(0, I) or its learned mixture), or from a prior
    fitted after training, fitted_prior = (params, PriorConfig) (`vdm_vae.load_fitted_prior`)."""
    if fitted_prior is None:
        return _model_prior_w(as_variables(params), rng, config=config, num=num)
    from vdm_vae.evaluation.fitted_prior import sample_w

    prior_params, prior_config = fitted_prior
    if prior_config.w_dim != config.w_dim:
        raise ValueError(f"fitted_prior has w_dim {prior_config.w_dim}, the model {config.w_dim}.")
    return sample_w(prior_params, rng, config=prior_config, num=num)


@functools.partial(jax.jit, static_argnames=("config", "num"))
def _model_prior_w(params, rng: jax.Array, *, config: ModelConfig, num: int) -> jax.Array:
    return VDMVAE(config).apply(params, rng, num, method=VDMVAE.sample_prior_w)


@functools.partial(jax.jit, static_argnames=("config",))
def _encode(params, images, t, *, config: ModelConfig):
    return VDMVAE(config).apply(params, images, t, method=VDMVAE.encode)


def encode(params, images, *, config: ModelConfig, t: Optional[float] = None
           ) -> Tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of q(w|x) for uint8 images [B,H,W,C]: each [B, w_dim].

    `t` in [0, 1] is required by a time-conditioned encoder and ignored otherwise.
    """
    if not config.conditional:
        raise ValueError("encode needs a model with an encoder; config.encoder.kind is 'none'.")
    images = check_images(images, config)
    t_arr = None
    if config.encoder.time_conditioned:
        if t is None:
            raise ValueError("encoder.kind='conv_time' needs t in [0, 1], got None.")
        t_arr = jnp.full((images.shape[0],), t, jnp.float32)
    mean, logvar = _encode(as_variables(params), images, t_arr, config=config)
    return mean, jnp.exp(0.5 * logvar)


def posterior(params, images: np.ndarray, config: ModelConfig, batch_size: int,
              desc: Optional[str] = None):
    """(mean, logvar) of q(w|x), each [N, w_dim]; a progress line on stderr if `desc`."""
    means, logvars = [], []
    progress = Progress(len(images), desc, "img") if desc else None
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        mean, std = encode(params, batch, config=config)
        means.append(np.asarray(mean))
        logvars.append(2.0 * np.log(np.asarray(std)))
        if progress:
            progress.update(len(batch))
    return np.concatenate(means), np.concatenate(logvars)
