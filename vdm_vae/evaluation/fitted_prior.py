"""A learned prior p_psi(w) fitted to q(w) after training: a small continuous-time VDM on
w-space (vdm_vae/model/w_vdm.py, the same model as the prior learned with the model).

Its negative ELBO bounds -log p_psi(w) (a Gaussian decoder p(w|z_0) makes it a density), so
KL(q(w|x) || p_psi) <= -H(q(w|x)) + E_q[bound], and the image bound stays honest.
"""

import dataclasses
import functools
import json
import os
from typing import Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vdm_vae.model.diffusion import gaussian_entropy
from vdm_vae.model.w_vdm import PriorConfig, WScoreNet, neg_elbo, sample_w
from vdm_vae.runtime import atomic
from vdm_vae.runtime.progress import Progress

# The w-space VDM's maths live in vdm_vae/model/w_vdm.py; these names stay importable here.
__all__ = ["PriorConfig", "WScoreNet", "neg_elbo", "sample_w", "kl_to_prior_bound", "fit",
           "save", "load", "load_fitted_prior"]


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
