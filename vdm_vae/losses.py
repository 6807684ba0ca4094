"""From per-example nats to bits/dim: the honest bound and the training objective."""

from typing import Dict, Sequence

import jax
import jax.numpy as jnp

from vdm_vae.diffusion import bits_per_dim_factor, capacity_objective, kl_objective
from vdm_vae.model import VAEOutput
from vdm_vae.model_config import LossConfig


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

    With beta = 1 and no free bits, capacity or MMD it equals mean(bpd).
    """
    k = bits_per_dim_factor(image_shape)
    vdm = out.loss_recon + out.loss_klz + out.loss_diff
    if loss.free_bits > 0:  # per-dimension floors: on the KL to N(0, I), the only prior they allow
        kl = kl_objective(out.kl_w_per_dim, loss.free_bits, loss.capacity)
    else:
        kl = capacity_objective(out.kl_w, loss.capacity)
    return jnp.mean(vdm + beta * kl) * k + loss.mmd_weight * out.mmd_w
