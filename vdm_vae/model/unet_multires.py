"""A multi-resolution score U-Net (DDPM-style), an option beside the faithful one.

google-research/vdm's U-Net (vdm_vae/model/unet.py) keeps every block at full resolution. This one
halves the resolution between levels (28 -> 14 -> 7 for MNIST with `sm_ch_mult=(1, 2, 2)`)
and widens the channels by `sm_ch_mult`, as the U-Nets of DDPM do: most of the compute moves to
small feature maps, where a 3x3 convolution sees a larger part of the image. Everything else is
the same: the ResnetBlock, the time embedding with w concatenated, Fourier features, the
zero-initialised output and eps_hat = net(z) + z. w reaches every resolution already: the
embedding of (t, w) is projected into every ResnetBlock of every level (cond_proj), and with
config.w_film w also modulates each block's second GroupNorm.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vdm_vae.cpu.group_norm import GroupNorm
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.unet import (
    AttnBlock,
    ResnetBlock,
    _conv,
    base2_fourier_features,
    conditioning_embedding,
    film_input,
)


class Downsample(nn.Module):
    """3x3 convolution with stride 2: [B,H,W,C] -> [B,ceil(H/2),ceil(W/2),C]."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype,
                       name="conv")(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2, cropped to (H, W), then a 3x3 convolution:
    [B,h,w,C] -> [B,H,W,C] with H <= 2h, W <= 2w.

    Each pixel is repeated 2 x 2 times (jax.image.resize's "nearest" computes the same, with
    a gather whose gradient is ten times slower on XLA:CPU).
    """

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, size) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)[:, :size[0], :size[1]]
        return _conv(x.shape[-1], "conv", self.dtype)(x)


class MultiResScoreUNet(nn.Module):
    """eps_hat(z_t, cond; gamma_t) with resolution levels `config.sm_ch_mult`."""

    config: ModelConfig

    @nn.compact
    def __call__(self, z: jax.Array, g_t: jax.Array, cond: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        """eps_hat [B,H,W,C] from z [B,H,W,C], g_t [B] and cond [B,D], as ScoreUNet."""
        c = self.config
        dtype = jnp.dtype(c.compute_dtype)
        n_embd, levels = c.sm_n_embd, len(c.sm_ch_mult)
        temb = conditioning_embedding(c, g_t, cond, z.shape[0], dtype)
        w = film_input(c, g_t, cond, z.shape[0])

        def attend(h, name):
            return AttnBlock(c.sm_norm_groups, dtype, c.attention_impl, name=name)(h)

        h = z
        if c.with_fourier_features:
            h = jnp.concatenate([z, base2_fourier_features(z)], axis=-1)
        hs = [_conv(n_embd, "conv_in", dtype)(h)]
        for level, mult in enumerate(c.sm_ch_mult):
            for i in range(c.sm_n_layer):
                h = ResnetBlock(c, n_embd * mult, dtype, name=f"down_{level}.block_{i}")(
                    hs[-1], temb, deterministic, w)
                if c.with_attention and level == levels - 1:
                    h = attend(h, f"down_{level}.attn_{i}")
                hs.append(h)
            if level < levels - 1:
                hs.append(Downsample(dtype, name=f"down_{level}.downsample")(hs[-1]))

        h = ResnetBlock(c, None, dtype, name="mid.block_1")(hs[-1], temb, deterministic, w)
        h = attend(h, "mid.attn_1")
        h = ResnetBlock(c, None, dtype, name="mid.block_2")(h, temb, deterministic, w)

        for level in reversed(range(levels)):
            for i in range(c.sm_n_layer + 1):
                h = ResnetBlock(c, n_embd * c.sm_ch_mult[level], dtype,
                                name=f"up_{level}.block_{i}")((h, hs.pop()), temb, deterministic, w)
                if c.with_attention and level == levels - 1:
                    h = attend(h, f"up_{level}.attn_{i}")
            if level > 0:
                h = Upsample(dtype, name=f"up_{level}.upsample")(h, hs[-1].shape[1:3])

        h = nn.swish(GroupNorm(c.sm_norm_groups, dtype=dtype, name="GroupNorm_0")(h))
        eps = _conv(z.shape[-1], "conv_out", dtype, zero=True)(h)
        return eps.astype(jnp.float32) + z
