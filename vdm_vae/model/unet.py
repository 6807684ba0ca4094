"""Score U-Net eps_hat(z_t, cond; gamma_t) with google-research/vdm's parameter names."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.cpu.attention import attention
from vdm_vae.cpu.dropout import Dropout
from vdm_vae.cpu.group_norm import GroupNorm
from vdm_vae.cpu.layers import Conv3x3, Dense, Parts, as_parts
from vdm_vae.model.config import ModelConfig


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000), as tensor2tensor.

    Args:
      t: [B] times.
      dim: embedding size.
    Returns:
      [B, dim] embedding, zero-padded when dim is odd.
    """
    t = t.astype(jnp.float32) * 1000.0
    half = dim // 2
    freqs = jnp.exp(-np.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
    emb = t[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def base2_fourier_features(z: jax.Array, start: int = 6, stop: int = 8) -> jax.Array:
    """sin/cos of 2^k * 2 pi * z for k in [start, stop): [B,H,W,C] -> [B,H,W,2C(stop-start)]."""
    freqs = 2.0 ** jnp.arange(start, stop, dtype=z.dtype) * 2 * jnp.pi
    n = stop - start
    w = jnp.tile(freqs[None, :], (1, z.shape[-1]))
    h = jnp.repeat(z, n, axis=-1) * w
    return jnp.concatenate([jnp.sin(h), jnp.cos(h)], axis=-1)


def _conv(features: int, name: str, dtype, zero: bool = False) -> Conv3x3:
    init = nn.initializers.zeros if zero else nn.linear.default_kernel_init
    return Conv3x3(features, kernel_init=init, dtype=dtype, name=name)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv, + cond_proj(cond), GroupNorm-swish-dropout-conv, + shortcut.

    Given w (config.w_film), the second GroupNorm's output is scaled and shifted by w,
    GN(h) * (1 + s(w)) + b(w), [s, b] a zero-initialised Dense of w without bias (Diff-AE's
    AdaGN): the block starts as it is without w_film, and w = 0 leaves it unchanged.
    """

    config: ModelConfig
    out_ch: Optional[int] = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Parts, cond: jax.Array, deterministic: bool,
                 w: Optional[jax.Array] = None) -> jax.Array:
        """Args: x [B,H,W,C] or its channel parts (an up block's (h, skip): the concatenation
        is never formed), cond [B,D], w [B,w_dim] or None. Returns: [B,H,W,out_ch]."""
        groups = self.config.sm_norm_groups
        parts = as_parts(x)
        in_ch = sum(p.shape[-1] for p in parts)
        out_ch = in_ch if self.out_ch is None else self.out_ch
        h = [nn.swish(p) for p in GroupNorm(groups, dtype=self.dtype, name="GroupNorm_0")(parts)]
        h = _conv(out_ch, "conv1", self.dtype)(h)
        h = h + nn.Dense(out_ch, use_bias=False, kernel_init=nn.initializers.zeros,
                         dtype=self.dtype, name="cond_proj")(cond)[:, None, None, :]
        h = GroupNorm(groups, dtype=self.dtype, name="GroupNorm_1")(h)
        if w is not None:
            film = nn.Dense(2 * out_ch, use_bias=False, kernel_init=nn.initializers.zeros,
                            dtype=self.dtype, name="w_film")(w.astype(jnp.float32))
            scale, shift = jnp.split(film[:, None, None, :], 2, axis=-1)
            h = h * (1.0 + scale) + shift
        h = nn.swish(h)
        h = Dropout(self.config.sm_pdrop, name="Dropout_0")(h, deterministic)
        h = _conv(out_ch, "conv2", self.dtype, zero=True)(h)
        if in_ch != out_ch:
            return Dense(out_ch, dtype=self.dtype, name="nin_shortcut")(parts) + h
        return (parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, residual."""

    norm_groups: int = 32
    dtype: jnp.dtype = jnp.float32
    impl: str = "auto"  # vdm_vae.cpu.attention: "auto", "batched" or "per_example"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x [B,H,W,C]. Returns: [B,H,W,C]."""
        b, hh, ww, c = x.shape
        h = GroupNorm(self.norm_groups, dtype=self.dtype, name="GroupNorm_0")(x)
        q, k, v = (Dense(c, dtype=self.dtype, name=n)(h).reshape(b, hh * ww, c)
                   for n in ("q", "k", "v"))
        h = attention(q, k, v, self.impl).reshape(b, hh, ww, c)
        h = Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="proj_out")(h)
        return x + h


def gate_w(c: ModelConfig, g_t: jax.Array, cond: jax.Array, batch: int) -> jax.Array:
    """cond [B,D], zeroed where gamma_t < c.w_min_gamma when that gate is set; g_t [B] or []."""
    g_t = jnp.broadcast_to(jnp.reshape(g_t, (-1,)), (batch,))
    if c.w_min_gamma is not None and c.conditional:
        cond = jnp.where((g_t >= c.w_min_gamma)[:, None], cond, 0.0)
    return cond


def film_input(c: ModelConfig, g_t: jax.Array, cond: jax.Array, batch: int
               ) -> Optional[jax.Array]:
    """What each ResnetBlock's AdaGN sees: the gated w [B,D] with c.w_film, else None."""
    return gate_w(c, g_t, cond, batch) if c.w_film else None


def conditioning_embedding(c: ModelConfig, g_t: jax.Array, cond: jax.Array, batch: int,
                           dtype) -> jax.Array:
    """MLP of [timestep_embedding(t), cond], t the position of gamma_t in [gamma_min, gamma_max].

    Call it inside a compact `__call__`: its Dense layers (dense0, dense1) are the caller's.
    With c.w_min_gamma set, cond is zeroed where gamma_t < c.w_min_gamma.
    Args: g_t [B] or scalar; cond [B,D]. Returns: [B, 4 * sm_n_embd].
    """
    cond = gate_w(c, g_t, cond, batch)
    g_t = jnp.broadcast_to(jnp.reshape(g_t, (-1,)), (batch,))
    t = (g_t - c.gamma_min) / (c.gamma_max - c.gamma_min)
    temb = jnp.concatenate([timestep_embedding(t, c.sm_n_embd), cond.astype(jnp.float32)],
                           axis=1)
    temb = nn.swish(nn.Dense(4 * c.sm_n_embd, dtype=dtype, name="dense0")(temb))
    return nn.swish(nn.Dense(4 * c.sm_n_embd, dtype=dtype, name="dense1")(temb))


class ScoreUNet(nn.Module):
    """The VDM U-Net without resolution changes; returns eps_hat = net(z) + z."""

    config: ModelConfig

    @nn.compact
    def __call__(self, z: jax.Array, g_t: jax.Array, cond: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        """Predicts the noise in z.

        Args:
          z: [B,H,W,C] noisy latent z_t.
          g_t: [B] (or scalar) gamma(t).
          cond: [B,D] conditioning: w, or zeros [B,1] for an unconditional model.
          deterministic: disables dropout.
        Returns:
          eps_hat [B,H,W,C], float32.
        """
        c = self.config
        dtype = jnp.dtype(c.compute_dtype)
        n_embd = c.sm_n_embd
        temb = conditioning_embedding(c, g_t, cond, z.shape[0], dtype)
        w = film_input(c, g_t, cond, z.shape[0])

        h = z
        if c.with_fourier_features:
            h = jnp.concatenate([z, base2_fourier_features(z)], axis=-1)
        h = _conv(n_embd, "conv_in", dtype)(h)
        hs = [h]
        for i in range(c.sm_n_layer):
            h = ResnetBlock(c, n_embd, dtype, name=f"down.block_{i}")(
                hs[-1], temb, deterministic, w)
            if c.with_attention:
                h = AttnBlock(c.sm_norm_groups, dtype, c.attention_impl, name=f"down.attn_{i}")(h)
            hs.append(h)

        h = ResnetBlock(c, None, dtype, name="mid.block_1")(hs[-1], temb, deterministic, w)
        h = AttnBlock(c.sm_norm_groups, dtype, c.attention_impl, name="mid.attn_1")(h)
        h = ResnetBlock(c, None, dtype, name="mid.block_2")(h, temb, deterministic, w)

        for i in range(c.sm_n_layer + 1):
            h = ResnetBlock(c, n_embd, dtype, name=f"up.block_{i}")(
                (h, hs.pop()), temb, deterministic, w)
            if c.with_attention:
                h = AttnBlock(c.sm_norm_groups, dtype, c.attention_impl, name=f"up.attn_{i}")(h)

        h = nn.swish(GroupNorm(c.sm_norm_groups, dtype=dtype, name="GroupNorm_0")(h))
        eps = _conv(z.shape[-1], "conv_out", dtype, zero=True)(h)
        return eps.astype(jnp.float32) + z
