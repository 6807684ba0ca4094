"""A learned prior p_psi(w): a small continuous-time VDM on w-space, fitted to q(w).

Its negative ELBO bounds -log p_psi(w) (a Gaussian decoder p(w|z_0) makes it a density), so
KL(q(w|x) || p_psi) <= -H(q(w|x)) + E_q[bound], and the image bound stays honest.
"""

import dataclasses
import functools
import json
import os
from typing import Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vdm_vae.model.unet import timestep_embedding
from vdm_vae.runtime import atomic
from vdm_vae.runtime.progress import Progress


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """Size and schedule of the w-space VDM (fixed linear gamma)."""

    w_dim: int
    hidden: int = 512
    n_layers: int = 3
    gamma_min: float = -10.0
    gamma_max: float = 8.0


class WScoreNet(nn.Module):
    """MLP eps_hat(z_t, t): [B,D], [B] -> [B,D]."""

    config: PriorConfig

    @nn.compact
    def __call__(self, z: jax.Array, t: jax.Array) -> jax.Array:
        c = self.config
        h = jnp.concatenate([z, timestep_embedding(t, 64)], axis=-1)
        for i in range(c.n_layers):
            h = nn.swish(nn.Dense(c.hidden, name=f"dense{i}")(h))
        return nn.Dense(c.w_dim, kernel_init=nn.initializers.zeros, name="out")(h)


def _gamma(c: PriorConfig, t):
    return c.gamma_min + (c.gamma_max - c.gamma_min) * t


def neg_elbo(params, w: jax.Array, rng: jax.Array, config: PriorConfig,
             t: Optional[jax.Array] = None) -> jax.Array:
    """Upper bound on -log p_psi(w) in nats, per example: [B,D] -> [B].

    t: optional [B] diffusion times (default: antithetic over the batch).
    """
    c, d = config, w.shape[-1]
    rng_t, rng_eps = jax.random.split(rng)
    g0, g1 = _gamma(c, 0.0), _gamma(c, 1.0)
    # -log N(w; z_0/alpha_0, e^{gamma_0}) averaged over z_0 ~ q(z_0|w), in closed form.
    recon = 0.5 * d * (np.log(2 * np.pi) + g0 + 1.0)
    var1 = 1.0 / (1.0 + np.exp(-g1))
    prior = 0.5 * jnp.sum((1 - var1) * w ** 2 + var1 - np.log(var1) - 1.0, axis=-1)
    if t is None:
        t = jnp.mod(jax.random.uniform(rng_t) + jnp.arange(w.shape[0]) / w.shape[0], 1.0)
    var_t = jax.nn.sigmoid(_gamma(c, t))[:, None]
    eps = jax.random.normal(rng_eps, w.shape)
    z_t = jnp.sqrt(1 - var_t) * w + jnp.sqrt(var_t) * eps
    eps_hat = WScoreNet(c).apply({"params": params}, z_t, t)
    diff = 0.5 * (c.gamma_max - c.gamma_min) * jnp.sum((eps - eps_hat) ** 2, axis=-1)
    return recon + prior + diff


def gaussian_entropy(logvar: jax.Array) -> jax.Array:
    """Entropy of N(mean, exp(logvar)) in nats: [B,D] -> [B]."""
    return 0.5 * jnp.sum(1.0 + np.log(2 * np.pi) + logvar, axis=-1)


@functools.partial(jax.jit, static_argnames=("config", "draws"))
def kl_to_prior_bound(params, mean, logvar, rng, config: PriorConfig, draws: int = 16):
    """Upper bound on KL(q(w|x) || p_psi) per example [B], averaged over `draws` draws.

    Each draw takes w ~ q(w|x), a time t and the noise of z_t; the times of an example are
    stratified over its draws, t_k = (u + k / draws) mod 1, and every example has its own u,
    so the examples' estimates are independent (their spread gives a standard error).
    """
    rng_u, rng_draws = jax.random.split(rng)
    u = jax.random.uniform(rng_u, mean.shape[:1])
    total = 0.0
    for k in range(draws):
        r_w, r_elbo = jax.random.split(jax.random.fold_in(rng_draws, k))
        w = mean + jnp.exp(0.5 * logvar) * jax.random.normal(r_w, mean.shape)
        total = total + neg_elbo(params, w, r_elbo, config, t=jnp.mod(u + k / draws, 1.0))
    return total / draws - gaussian_entropy(logvar)


@functools.partial(jax.jit, static_argnames=("config", "num", "steps"))
def sample_w(params, rng: jax.Array, *, config: PriorConfig, num: int, steps: int = 200):
    """Ancestral samples of p_psi(w): [num, w_dim]."""
    rng_z, rng_loop = jax.random.split(rng)

    def body(i, z):
        t, s = (steps - i) / steps, (steps - i - 1) / steps
        g_t, g_s = _gamma(config, t), _gamma(config, s)
        eps_hat = WScoreNet(config).apply({"params": params}, z, jnp.full((num,), t))
        c = -jnp.expm1(g_s - g_t)
        mean = jnp.sqrt(jax.nn.sigmoid(-g_s) / jax.nn.sigmoid(-g_t)) * (
            z - jnp.sqrt(jax.nn.sigmoid(g_t)) * c * eps_hat)
        noise = jax.random.normal(jax.random.fold_in(rng_loop, i), z.shape)
        return mean + jnp.sqrt(jax.nn.sigmoid(g_s) * c) * noise

    z0 = jax.lax.fori_loop(0, steps, body, jax.random.normal(rng_z, (num, config.w_dim)))
    return z0 / jnp.sqrt(jax.nn.sigmoid(-_gamma(config, 0.0)))


def fit(mean: np.ndarray, logvar: np.ndarray, config: PriorConfig, steps: int, batch: int,
        rng: jax.Array, learning_rate: float = 1e-3) -> Tuple[dict, list]:
    """Fits p_psi to the aggregate posterior given [N,D] means and log-variances.

    Returns (params, losses every 100 steps in nats per example).
    """
    rng_init, rng_train = jax.random.split(rng)
    params = WScoreNet(config).init(rng_init, jnp.zeros((1, config.w_dim)), jnp.zeros((1,)))
    params = params["params"]
    tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=0.0)
    opt_state = tx.init(params)
    mean, std = jnp.asarray(mean), jnp.exp(0.5 * jnp.asarray(logvar))

    @jax.jit
    def step(params, opt_state, key):
        k_idx, k_w, k_loss = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (batch,), 0, mean.shape[0])
        w = mean[idx] + std[idx] * jax.random.normal(k_w, (batch, config.w_dim))
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean(neg_elbo(p, w, k_loss, config)))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    history = []
    progress = Progress(steps, "fitting the prior", "step", interval=10.0)
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(rng_train, i))
        if i % 100 == 0 or i == steps - 1:
            history.append(float(loss))
            progress.desc = f"fitting the prior (loss {history[-1]:.2f} nats)"
        progress.update()
    return params, history


def save(directory: str, params, config: PriorConfig):
    """Writes prior.msgpack and prior.json in `directory`, atomically."""
    for name, payload in (("prior.msgpack", flax.serialization.to_bytes(params)),
                          ("prior.json", json.dumps(dataclasses.asdict(config)).encode())):
        atomic.write_bytes(os.path.join(directory, name), payload)


def load(directory: str) -> Tuple[dict, PriorConfig]:
    """(params, PriorConfig) written by `save`."""
    with open(os.path.join(directory, "prior.json")) as f:
        config = PriorConfig(**json.load(f))
    template = WScoreNet(config).init(jax.random.PRNGKey(0), jnp.zeros((1, config.w_dim)),
                                      jnp.zeros((1,)))["params"]
    with open(os.path.join(directory, "prior.msgpack"), "rb") as f:
        return flax.serialization.from_bytes(template, f.read()), config


def load_fitted_prior(workdir: str) -> Tuple[dict, PriorConfig]:
    """The learned prior that `python -m vdm_vae.evaluation.fit_prior` saved in workdir/w_prior."""
    directory = os.path.join(workdir, "w_prior")
    if not os.path.exists(os.path.join(directory, "prior.json")):
        raise FileNotFoundError(f"no learned prior in {directory}: run "
                                "`python -m vdm_vae.evaluation.fit_prior "
                                f"--workdir={workdir} ...` first.")
    return load(directory)
