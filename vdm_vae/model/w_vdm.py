"""A small continuous-time VDM on w-space: the density p_psi(w) of a learned prior.

One implementation for both of its uses: the prior learned with the model
(`ModelConfig.w_prior_vdm`, vdm_vae/model/vae.py) and the prior fitted after training
(vdm_vae/evaluation/fitted_prior.py). Its negative ELBO bounds -log p_psi(w): the decoder
p(w|z_0) is a Gaussian, so p_psi is a density on R^D and

    KL(q(w|x) || p_psi) <= E_q[neg_elbo(w)] - H[q(w|x)].
"""

import dataclasses
import functools
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.model.unet import timestep_embedding

# eps_hat(z_t [B,D], t [B]) -> [B,D]: the score network with its parameters bound.
EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """Size and schedule of the w-space VDM (fixed linear gamma).

    Attributes:
      normal_base: eps_hat = sigma_t z_t + MLP(z_t, t). sigma_t z_t is the exact noise
        prediction for w ~ N(0, I), so the MLP learns a correction to that prior (LSGM's mixed
        score) and, zero at initialisation, starts p_psi at N(0, (1 + 2 e^{gamma_min}) I).
        False: eps_hat = MLP, which starts p_psi at N(0, (1 + 2 e^{gamma_max}) I).
    """

    w_dim: int
    hidden: int = 512
    n_layers: int = 3
    gamma_min: float = -10.0
    gamma_max: float = 8.0
    normal_base: bool = False


class WScoreNet(nn.Module):
    """MLP eps_hat(z_t, t): [B,D], [B] -> [B,D], zero at initialisation."""

    config: PriorConfig

    @nn.compact
    def __call__(self, z: jax.Array, t: jax.Array) -> jax.Array:
        c = self.config
        h = jnp.concatenate([z, timestep_embedding(t, 64)], axis=-1)
        for i in range(c.n_layers):
            h = nn.swish(nn.Dense(c.hidden, name=f"dense{i}")(h))
        return nn.Dense(c.w_dim, kernel_init=nn.initializers.zeros, name="out")(h)


def gamma(c: PriorConfig, t):
    """The linear schedule gamma(t) = gamma_min + (gamma_max - gamma_min) t."""
    return c.gamma_min + (c.gamma_max - c.gamma_min) * t


def predict_eps(eps_fn: EpsFn, z: jax.Array, t: jax.Array, config: PriorConfig) -> jax.Array:
    """eps_hat [B,D] of z_t [B,D] at t [B]: the network's output, plus sigma_t z_t with
    config.normal_base."""
    eps_hat = eps_fn(z, t)
    if config.normal_base:
        eps_hat = eps_hat + jnp.sqrt(jax.nn.sigmoid(gamma(config, t)))[:, None] * z
    return eps_hat


def bound_eps_fn(params, config: PriorConfig) -> EpsFn:
    """eps_hat of WScoreNet(config) with `params` (the tree under "params"); a free-standing
    network (parent=None) even when called inside another module's method."""
    return functools.partial(WScoreNet(config, parent=None).apply, {"params": params})


def neg_elbo_terms(eps_fn: EpsFn, w: jax.Array, t: jax.Array, eps: jax.Array,
                   config: PriorConfig) -> jax.Array:
    """Upper bound on -log p_psi(w) in nats at given t [B] and eps [B,D]: [B,D] -> [B].

    eps_fn is the score network (predict_eps adds the normal base where configured).

    The reconstruction and prior terms are in closed form; the continuous-time diffusion loss
    0.5 gamma'(t) ||eps - eps_hat(z_t, t)||^2 is the one-draw estimate. Unbiased for the
    expected bound when t ~ U(0, 1) and eps ~ N(0, I) for each example.
    """
    c, d = config, w.shape[-1]
    g0, g1 = gamma(c, 0.0), gamma(c, 1.0)
    # -log N(w; z_0/alpha_0, e^{gamma_0}) averaged over z_0 ~ q(z_0|w), in closed form.
    recon = 0.5 * d * (np.log(2 * np.pi) + g0 + 1.0)
    var1 = 1.0 / (1.0 + np.exp(-g1))
    prior = 0.5 * jnp.sum((1 - var1) * w ** 2 + var1 - np.log(var1) - 1.0, axis=-1)
    var_t = jax.nn.sigmoid(gamma(c, t))[:, None]
    z_t = jnp.sqrt(1 - var_t) * w + jnp.sqrt(var_t) * eps
    eps_hat = predict_eps(eps_fn, z_t, t, c)
    diff = 0.5 * (c.gamma_max - c.gamma_min) * jnp.sum((eps - eps_hat) ** 2, axis=-1)
    return recon + prior + diff


def neg_elbo(params, w: jax.Array, rng: jax.Array, config: PriorConfig,
             t: Optional[jax.Array] = None) -> jax.Array:
    """Upper bound on -log p_psi(w) in nats, per example: [B,D] -> [B].

    t: optional [B] diffusion times (default: antithetic over the batch).
    """
    rng_t, rng_eps = jax.random.split(rng)
    if t is None:
        t = jnp.mod(jax.random.uniform(rng_t) + jnp.arange(w.shape[0]) / w.shape[0], 1.0)
    eps = jax.random.normal(rng_eps, w.shape)
    return neg_elbo_terms(bound_eps_fn(params, config), w, t, eps, config)


def ancestral_samples(eps_fn: EpsFn, rng: jax.Array, config: PriorConfig, num: int,
                      steps: int) -> jax.Array:
    """Ancestral samples of p_psi(w) in `steps` steps uniform in t: [num, w_dim]."""
    rng_z, rng_loop = jax.random.split(rng)

    def body(i, z):
        t, s = (steps - i) / steps, (steps - i - 1) / steps
        g_t, g_s = gamma(config, t), gamma(config, s)
        eps_hat = predict_eps(eps_fn, z, jnp.full((num,), t), config)
        c = -jnp.expm1(g_s - g_t)
        mean = jnp.sqrt(jax.nn.sigmoid(-g_s) / jax.nn.sigmoid(-g_t)) * (
            z - jnp.sqrt(jax.nn.sigmoid(g_t)) * c * eps_hat)
        noise = jax.random.normal(jax.random.fold_in(rng_loop, i), z.shape)
        return mean + jnp.sqrt(jax.nn.sigmoid(g_s) * c) * noise

    z0 = jax.lax.fori_loop(0, steps, body, jax.random.normal(rng_z, (num, config.w_dim)))
    return z0 / jnp.sqrt(jax.nn.sigmoid(-gamma(config, 0.0)))


@functools.partial(jax.jit, static_argnames=("config", "num", "steps"))
def sample_w(params, rng: jax.Array, *, config: PriorConfig, num: int, steps: int = 200):
    """Ancestral samples of p_psi(w) given the score network's params: [num, w_dim]."""
    return ancestral_samples(bound_eps_fn(params, config), rng, config, num, steps)
