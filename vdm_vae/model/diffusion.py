"""VDM and VAE maths as pure functions: pixel scaling, decoder, loss terms, time sampling.

All losses are in nats; `bits_per_dim` converts them.
"""

import jax
import jax.numpy as jnp
import numpy as np


def pixels_to_unit(x: jax.Array, vocab_size: int) -> jax.Array:
    """Integer pixels {0..V-1} -> bin centres 2(x + 0.5)/V - 1 in (-1, 1). Any shape."""
    return 2.0 * ((jnp.round(x).astype(jnp.float32) + 0.5) / vocab_size) - 1.0


def decoder_logits(z0_rescaled: jax.Array, g_0: jax.Array, vocab_size: int) -> jax.Array:
    """Unnormalised log p(x|z_0) for every pixel value.

    Args:
      z0_rescaled: [B,H,W,C] z_0 / alpha_0.
      g_0: scalar gamma(0).
      vocab_size: number of pixel values V.
    Returns:
      [B,H,W,C,V] logits -0.5 (z - x_v)^2 / sigma_0^2 / alpha_0^2, exact for independent pixels.
    """
    x_vals = pixels_to_unit(jnp.arange(vocab_size), vocab_size)  # [V]
    inv_stdev = jnp.exp(-0.5 * jnp.reshape(g_0, ()))
    return -0.5 * jnp.square((z0_rescaled[..., None] - x_vals) * inv_stdev)


def decoder_logprobs(z0_rescaled: jax.Array, g_0: jax.Array, vocab_size: int) -> jax.Array:
    """log p(x|z_0) normalised over the V values: [B,H,W,C] -> [B,H,W,C,V]."""
    return jax.nn.log_softmax(decoder_logits(z0_rescaled, g_0, vocab_size), axis=-1)


def reconstruction_loss(x: jax.Array, z0_rescaled: jax.Array, g_0: jax.Array,
                        vocab_size: int) -> jax.Array:
    """-log p(x|z_0) summed over all pixels and channels: [B,H,W,C] -> [B]."""
    logprobs = decoder_logprobs(z0_rescaled, g_0, vocab_size)
    idx = jnp.round(x).astype(jnp.int32)[..., None]
    picked = jnp.take_along_axis(logprobs, idx, axis=-1)[..., 0]
    return -jnp.sum(picked, axis=tuple(range(1, x.ndim)))


def prior_loss(f: jax.Array, var_1: jax.Array) -> jax.Array:
    """KL(q(z_1|x) || N(0, I)) for data f [B,H,W,C] in (-1, 1): returns [B]."""
    mean1_sqr = (1.0 - var_1) * jnp.square(f)
    kl = 0.5 * (mean1_sqr + var_1 - jnp.log(var_1) - 1.0)
    return jnp.sum(kl, axis=tuple(range(1, f.ndim)))


def sample_times(rng: jax.Array, n: int, antithetic: bool) -> jax.Array:
    """[n] times in [0, 1): one uniform offset plus an even grid when antithetic."""
    if antithetic:
        t0 = jax.random.uniform(rng)
        return jnp.mod(t0 + jnp.arange(0.0, 1.0, step=1.0 / n), 1.0)
    return jax.random.uniform(rng, (n,))


def diffusion_loss_continuous(g_t_grad: jax.Array, mse: jax.Array) -> jax.Array:
    """T -> infinity diffusion loss 0.5 gamma'(t) ||eps - eps_hat||^2: [B], [B] -> [B]."""
    return 0.5 * g_t_grad * mse


def diffusion_loss_discrete(g_t: jax.Array, g_s: jax.Array, mse: jax.Array,
                            num_steps: int) -> jax.Array:
    """Finite-T diffusion loss 0.5 T (exp(gamma_t - gamma_s) - 1) ||eps - eps_hat||^2: [B]."""
    return 0.5 * num_steps * jnp.expm1(g_t - g_s) * mse


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per dimension, in nats: [B,D] -> [B,D]."""
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def gaussian_entropy(logvar: jax.Array) -> jax.Array:
    """Entropy in nats of N(mean, diag(exp(logvar))): [B,D] -> [B]."""
    return 0.5 * jnp.sum(1.0 + np.log(2 * np.pi) + logvar, axis=-1)


def bits_per_dim_factor(image_shape) -> float:
    """Converts nats per image to bits per dimension."""
    return 1.0 / (float(np.prod(image_shape)) * np.log(2.0))
