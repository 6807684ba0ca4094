"""The objective in one place: the honest bound in bits/dim, and what training minimises
(the KL weight beta and its warm-up, free bits, the capacity target, the MMD penalty)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Sequence

import jax
import jax.numpy as jnp

from vdm_vae.model.config import LossConfig
from vdm_vae.model.diffusion import bits_per_dim_factor

if TYPE_CHECKING:  # vae.py imports this module for the MMD
    from vdm_vae.model.vae import VAEOutput


def bpd_terms(out: VAEOutput, image_shape: Sequence[int]) -> Dict[str, jax.Array]:
    """Every term of the bound in bits/dim, each [B]; `bpd` is their sum at weight 1.

    `bpd` always includes the KL of w, so it bounds -log2 p(x) per dimension whatever the
    training weights were.
    """
    k = bits_per_dim_factor(image_shape)
    terms = {
        "bpd_recon": out.loss_recon * k,
        "bpd_prior": out.loss_klz * k,
        "bpd_diff": out.loss_diff * k,
        "bpd_kl_w": out.kl_w * k,
    }
    terms["bpd"] = sum(terms.values())
    return terms


def beta_at(step: jax.Array, beta: float, warmup_steps: int) -> jax.Array:
    """KL weight at `step`: linear warm-up from 0 to beta over warmup_steps (0 = none)."""
    if warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def training_objective(out: VAEOutput, loss: LossConfig, image_shape: Sequence[int],
                       beta: jax.Array) -> jax.Array:
    """Batch-mean objective in bits/dim: VDM terms + beta * KL term (+ MMD), a scalar.

    With beta = 1 and no free bits, capacity or MMD it equals mean(bpd), gradient included.
    A w-space VDM prior (out.kl_w_fit set) learns from the KL term at weight 1 whatever beta
    and the capacity target: the encoder sees beta * |KL - capacity|, the prior minimises its
    own bound on the codes (a prior that the capacity could reward for fitting worse would
    meet the target without the code carrying more).
    """
    k = bits_per_dim_factor(image_shape)
    vdm = out.loss_recon + out.loss_klz + out.loss_diff
    if loss.free_bits > 0:  # per-dimension floors: on the KL to N(0, I), the only prior they allow
        kl_term = beta * kl_objective(out.kl_w_per_dim, loss.free_bits, loss.capacity)
    elif out.kl_w_fit is not None:
        kl_term = joint_prior_kl_objective(out.kl_w, out.kl_w_fit, loss.capacity, beta)
    else:
        kl_term = beta * capacity_objective(out.kl_w, loss.capacity)
    return jnp.mean(vdm + kl_term) * k + loss.mmd_weight * out.mmd_w


def joint_prior_kl_objective(kl: jax.Array, kl_fit: jax.Array, capacity: float,
                             beta: jax.Array) -> jax.Array:
    """The KL term under a w-space VDM prior: [B], [B] -> [B].

    kl (gradient to encoder and prior) and kl_fit (the same value, gradient to the prior) give
    beta * capacity_objective(KL) for the encoder and the plain KL for the prior. With beta = 1
    and capacity 0 its value and gradient are those of kl.
    """
    prior_fit = kl_fit - jax.lax.stop_gradient(kl_fit)  # value 0, gradient to the prior only
    kl_encoder = kl - prior_fit  # the value of kl, gradient to the encoder only
    return beta * capacity_objective(kl_encoder, capacity) + prior_fit


def kl_objective(kl_per_dim: jax.Array, free_bits: float, capacity: float) -> jax.Array:
    """The KL of w as the training objective sees it, per example: [B,D] -> [B].

    free_bits > 0 floors the batch-mean KL of each dimension at free_bits nats (Kingma et
    al. 2016); capacity > 0 replaces KL by |KL - capacity| (Burgess et al. 2018). With both 0
    this is the plain KL.
    """
    kl = kl_per_dim
    if free_bits > 0:
        dim_mean = jnp.mean(kl, axis=0, keepdims=True)
        kl = jnp.where(dim_mean < free_bits, free_bits + 0.0 * kl, kl)
    return capacity_objective(jnp.sum(kl, axis=-1), capacity)


def capacity_objective(kl: jax.Array, capacity: float) -> jax.Array:
    """|KL - capacity| per example [B] if capacity > 0 (Burgess et al. 2018), else KL [B]."""
    return jnp.abs(kl - capacity) if capacity > 0 else kl


def mmd_to_standard_normal(rng: jax.Array, w: jax.Array) -> jax.Array:
    """Unbiased MMD^2 between samples w [B,D] and N(0, I), inverse multiquadric kernels."""
    prior = jax.random.normal(rng, w.shape)
    n, d = w.shape

    def kernel(a, b):
        sq = jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)
        return sum(s / (s + sq) for s in (0.2 * 2 * d, 2 * d, 5.0 * 2 * d))

    off_diag = 1.0 - jnp.eye(n)
    k_ww = jnp.sum(kernel(w, w) * off_diag) / (n * (n - 1))
    k_pp = jnp.sum(kernel(prior, prior) * off_diag) / (n * (n - 1))
    k_wp = jnp.mean(kernel(w, prior))
    return k_ww + k_pp - 2.0 * k_wp
