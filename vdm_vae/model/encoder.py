"""Encoder q(w|x) = N(mu(x), sigma(x)^2): diffusers' VAE `Encoder` with one block, in Flax.

With a single down block (`channel_mult=(1,)`) the diffusers encoder never downsamples, so
conv_out gives a one-channel H x W map that a Dense layer turns into mean and log-variance
(as the study did). Parameter counts: OE++ 716,481, OE 515,521, SE 261,793, TE 216,529.
More entries in `channel_mult` add down blocks, each after a stride-2 convolution (diffusers'
Downsample2D: pad right and bottom by one, 3x3 convolution, stride 2, no padding).
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vdm_vae.cpu.attention import attention
from vdm_vae.cpu.group_norm import GroupNorm
from vdm_vae.cpu.layers import Dense
from vdm_vae.model.config import EncoderConfig
from vdm_vae.model.unet import timestep_embedding

LOGVAR_RANGE = (-30.0, 20.0)  # as diffusers' DiagonalGaussianDistribution


class EncoderResnet(nn.Module):
    """diffusers ResnetBlock2D without time embedding: norm1-silu-conv1-norm2-silu-conv2."""

    out_ch: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.silu(GroupNorm(self.groups, epsilon=1e-6, name="norm1")(x))
        h = nn.Conv(self.out_ch, (3, 3), name="conv1")(h)
        h = nn.silu(GroupNorm(self.groups, epsilon=1e-6, name="norm2")(h))
        h = nn.Conv(self.out_ch, (3, 3), name="conv2")(h)
        if x.shape[-1] != self.out_ch:
            x = nn.Conv(self.out_ch, (1, 1), name="conv_shortcut")(x)
        return x + h


class EncoderAttention(nn.Module):
    """diffusers Attention with one head over H*W positions, residual."""

    groups: int
    impl: str = "auto"  # vdm_vae.cpu.attention: "auto", "batched" or "per_example"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, hh, ww, c = x.shape
        h = GroupNorm(self.groups, epsilon=1e-6, name="group_norm")(x).reshape(b, hh * ww, c)
        q, k, v = (Dense(c, name=n)(h) for n in ("to_q", "to_k", "to_v"))
        h = Dense(c, name="to_out_0")(attention(q, k, v, self.impl))
        return x + h.reshape(b, hh, ww, c)


class Encoder(nn.Module):
    """Maps images to the mean and log-variance of q(w|x).

    For kind "conv_time" the encoder also sees the diffusion time t (Abstreiter et al. 2022):
    its flattened features are concatenated with an MLP embedding of t before the last Dense.
    """

    config: EncoderConfig
    attention_impl: str = "auto"  # vdm_vae.cpu.attention: "auto", "batched" or "per_example"

    @nn.compact
    def __call__(self, x: jax.Array, t: Optional[jax.Array] = None
                 ) -> Tuple[jax.Array, jax.Array]:
        """Args: x [B,H,W,C] in [-1, 1]; t [B] for "conv_time". Returns: mean, logvar [B,w_dim]."""
        c = self.config
        ch, groups = c.block_out_channels, c.norm_num_groups
        h = nn.Conv(ch, (3, 3), name="conv_in")(x)
        for level, mult in enumerate(c.channel_mult):
            if level > 0:
                h = jnp.pad(h, ((0, 0), (0, 1), (0, 1), (0, 0)))
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), padding="VALID",
                            name=f"down_blocks_{level - 1}_downsamplers_0")(h)
            for i in range(c.layers_per_block):
                h = EncoderResnet(ch * mult, groups, name=f"down_blocks_{level}_resnets_{i}")(h)
        h = EncoderResnet(h.shape[-1], groups, name="mid_block_resnets_0")(h)
        h = EncoderAttention(groups, self.attention_impl, name="mid_block_attentions_0")(h)
        h = EncoderResnet(h.shape[-1], groups, name="mid_block_resnets_1")(h)
        h = nn.silu(GroupNorm(groups, epsilon=1e-6, name="conv_norm_out")(h))
        h = nn.Conv(c.out_channels, (3, 3), name="conv_out")(h)
        h = h.reshape(h.shape[0], -1)
        if c.time_conditioned:
            if t is None:
                raise ValueError("encoder.kind='conv_time' needs the diffusion time t, got None.")
            temb = timestep_embedding(jnp.broadcast_to(jnp.reshape(t, (-1,)), (x.shape[0],)), ch)
            temb = nn.silu(nn.Dense(4 * ch, name="time_dense0")(temb))
            temb = nn.silu(nn.Dense(4 * ch, name="time_dense1")(temb))
            h = jnp.concatenate([h, temb], axis=-1)
        out = nn.Dense(2 * c.w_dim, name="dense")(h)
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)
