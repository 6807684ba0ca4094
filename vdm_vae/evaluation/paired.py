"""Paired evaluation of the bound: the same noise for test image i and draw k in every model.

Most of the Monte Carlo noise of a bound comes from the diffusion time t and the noise eps
each image draws. Here t, eps (of z_t) and eps_0 (of the reconstruction term) of image i at
draw k come from their own keys, fold_in(fold_in(fold_in(PRNGKey(seed), stream), k), i),
whatever the model: conditional or not, of any encoder, any batch size. Only w is drawn
from each model's own q(w|x) (its own stream). Differences between models then have far
smaller variance than either bound (common random numbers).

With `antithetic`, the K draws of an image stratify time: t_k = (u_i + k / K) mod 1.
"""

import functools
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.evaluation.per_image import TERMS
from vdm_vae.model import objective
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.vae import VDMVAE
from vdm_vae.runtime.progress import Progress

EVAL_SEED = 0
T_STREAM, EPS0_STREAM, EPS_STREAM, W_STREAM = range(4)


def draw_key(seed: jax.Array, stream: int, k: jax.Array) -> jax.Array:
    """Key of one noise stream at draw k; fold in an image's index to get its own key."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), stream), k)


def _per_example(key: jax.Array, ids: jax.Array, fn) -> jax.Array:
    return jax.vmap(lambda i: fn(jax.random.fold_in(key, i)))(ids)


def paired_noise(seed: jax.Array, ids: jax.Array, k: jax.Array, draws: int, image_shape,
                 antithetic: bool = True):
    """(t [B], eps_0 [B,H,W,C], eps [B,H,W,C]) of the images with global indices ids [B].

    Args:
      seed: evaluation seed (int or [] int array).
      ids: [B] global indices of the test images.
      k: draw index in [0, draws).
      draws: K, the number of draws per image.
      image_shape: (H, W, C).
      antithetic: stratify t over the K draws of an image.
    """
    shape = tuple(image_shape)
    uniform = lambda key: jax.random.uniform(key)  # noqa: E731
    if antithetic:
        u = _per_example(draw_key(seed, T_STREAM, 0), ids, uniform)
        t = jnp.mod(u + k / draws, 1.0)
    else:
        t = _per_example(draw_key(seed, T_STREAM, k), ids, uniform)
    normal = lambda key: jax.random.normal(key, shape)  # noqa: E731
    eps_0 = _per_example(draw_key(seed, EPS0_STREAM, k), ids, normal)
    eps = _per_example(draw_key(seed, EPS_STREAM, k), ids, normal)
    return t, eps_0, eps


@functools.partial(jax.jit, static_argnames=("config", "draws", "antithetic"))
def draw_terms(params, images: jax.Array, ids: jax.Array, k: jax.Array, seed: jax.Array, *,
               config: ModelConfig, draws: int, antithetic: bool) -> Dict[str, jax.Array]:
    """Per-example bpd terms [B] of images [B,H,W,C] (global indices ids [B]) at draw k."""
    t, eps_0, eps = paired_noise(seed, ids, k, draws, config.image_shape, antithetic)
    out = VDMVAE(config).apply(params, images, t=t, eps_0=eps_0, eps=eps, example_ids=ids,
                               rngs={"sample": draw_key(seed, W_STREAM, k)})
    return objective.bpd_terms(out, config.image_shape)


def per_image_bound(params, images: np.ndarray, config: ModelConfig, *, draws: int = 1,
                    batch_size: int = 64, seed: int = EVAL_SEED, antithetic: bool = True,
                    desc: str = "test bound") -> Dict[str, np.ndarray]:
    """Every bound term of every image, averaged over its `draws` paired draws.

    Args:
      params: {"params": ...} of the model.
      images: uint8 [N,H,W,C]; image i has global index i.
      config: the model's config.
      draws: K >= 1 draws per image.
      batch_size: images per call (the result does not depend on it).
      seed: evaluation seed; runs evaluated with the same seed are paired.
      antithetic: stratify t over the K draws.
      desc: progress line label.

    Returns:
      name -> float64 [N] for the names in TERMS.
    """
    if draws < 1:
        raise ValueError(f"draws={draws} is invalid: expected an int >= 1.")
    n = len(images)
    sums = {name: np.zeros(n, np.float64) for name in TERMS}
    progress = Progress(draws * n, desc, "img")
    for k in range(draws):
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size]
            b = len(batch)
            # Pad the last batch so that one program serves every batch.
            pad = np.zeros((batch_size - b,) + batch.shape[1:], batch.dtype)
            ids = np.arange(start, start + batch_size, dtype=np.int32)
            terms = draw_terms(params, np.concatenate([batch, pad]), ids, k, seed,
                               config=config, draws=draws, antithetic=antithetic)
            for name in TERMS:
                sums[name][start:start + b] += np.asarray(terms[name][:b], np.float64)
            progress.update(b)
    return {name: value / draws for name, value in sums.items()}
