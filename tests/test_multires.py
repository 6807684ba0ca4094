"""The multi-resolution score U-Net and the downsampling encoder (config options)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_vae.model.config import EncoderConfig, ModelConfig
from vdm_vae.model.unet import ScoreUNet
from vdm_vae.model.unet_multires import MultiResScoreUNet
from vdm_vae.model.vae import VDMVAE, init_params

MULTIRES = dict(image_shape=(28, 28, 1), sm_n_embd=8, sm_n_layer=1, sm_ch_mult=(1, 2, 2),
                sm_norm_groups=4, with_fourier_features=True, gamma_type="fixed")


def _shapes(params, module):
    flat = flax.traverse_util.flatten_dict(params[module], sep="/")
    return {k: v.shape for k, v in flat.items()}


def test_multires_unet_halves_resolution_per_level_and_starts_as_identity():
    config = ModelConfig(**MULTIRES)
    assert isinstance(VDMVAE(config).bind(init_params(config, jax.random.PRNGKey(0)))
                      .score_model, MultiResScoreUNet)
    params = init_params(config, jax.random.PRNGKey(0))["params"]
    shapes = _shapes(params, "score_model")
    assert shapes["down_0.block_0/conv1/kernel"] == (3, 3, 8, 8)
    assert shapes["down_1.block_0/conv1/kernel"] == (3, 3, 8, 16)  # 14 x 14, 16 channels
    assert shapes["down_0.downsample/conv/kernel"] == (3, 3, 8, 8)
    assert shapes["up_2.block_0/conv1/kernel"] == (3, 3, 32, 16)  # (h, skip) at 7 x 7
    assert shapes["up_1.upsample/conv/kernel"] == (3, 3, 16, 16)
    assert "down_2.downsample/conv/kernel" not in shapes  # no downsampling after the last
    net = MultiResScoreUNet(config)
    z = jax.random.normal(jax.random.PRNGKey(1), (3, 28, 28, 1))
    out = net.apply({"params": params["score_model"]}, z, jnp.zeros((3,)), jnp.zeros((3, 1)))
    np.testing.assert_array_equal(out, z)  # conv_out starts at zero: eps_hat = z


def test_multires_unet_output_depends_on_every_level():
    config = ModelConfig(**MULTIRES)
    params = init_params(config, jax.random.PRNGKey(0))["params"]["score_model"]
    params = jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 28, 28, 1))
    net = MultiResScoreUNet(config)

    def loss(p):
        return jnp.sum(net.apply({"params": p}, z, jnp.ones((2,)), jnp.zeros((2, 1))) ** 2)

    grads = flax.traverse_util.flatten_dict(jax.jit(jax.grad(loss))(params), sep="/")
    for name in ("down_2.block_0/conv1/kernel", "mid.attn_1/q/kernel",
                 "up_2.block_1/conv2/kernel", "up_1.upsample/conv/kernel"):
        assert float(jnp.abs(grads[name]).sum()) > 0, name


def test_one_level_keeps_the_original_unet():
    config = ModelConfig(**dict(MULTIRES, sm_ch_mult=(1,)))
    assert isinstance(VDMVAE(config).bind(init_params(config, jax.random.PRNGKey(0)))
                      .score_model, ScoreUNet)


@pytest.mark.parametrize("channel_mult,out_channels,flat", [((1,), 1, 28 * 28),
                                                            ((1, 2, 2), 4, 7 * 7 * 4)])
def test_encoder_downsamples_per_level(channel_mult, out_channels, flat):
    enc = EncoderConfig(kind="conv", block_out_channels=8, layers_per_block=1,
                        norm_num_groups=4, w_dim=5, channel_mult=channel_mult,
                        out_channels=out_channels)
    config = ModelConfig(**dict(MULTIRES, encoder=enc))
    params = init_params(config, jax.random.PRNGKey(0))["params"]
    shapes = _shapes(params, "encoder")
    assert shapes["dense/kernel"] == (flat, 10)
    if len(channel_mult) > 1:
        assert shapes["down_blocks_0_downsamplers_0/kernel"] == (3, 3, 8, 8)
        assert shapes["down_blocks_2_resnets_0/conv2/kernel"] == (3, 3, 16, 16)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)), jnp.uint8)
    mean, logvar = VDMVAE(config).apply({"params": params}, images, method=VDMVAE.encode)
    assert mean.shape == logvar.shape == (2, 5)


@pytest.mark.parametrize("value", [(), (1, 0)])
def test_bad_ch_mult_names_the_field(value):
    with pytest.raises(ValueError, match="config.model.sm_ch_mult="):
        ModelConfig(**dict(MULTIRES, sm_ch_mult=value))


@pytest.mark.parametrize("field,value", [("channel_mult", ()), ("out_channels", 0)])
def test_bad_encoder_levels_name_the_field(field, value):
    enc = EncoderConfig(kind="conv", block_out_channels=8, norm_num_groups=4, **{field: value})
    with pytest.raises(ValueError, match=f"config.model.encoder.{field}="):
        ModelConfig(**dict(MULTIRES, encoder=enc))


@pytest.mark.parametrize("size", [(14, 14), (7, 7)])
def test_upsample_is_nearest_resize_by_two_cropped_then_conv(size):
    from vdm_vae.model.unet_multires import Upsample

    h, w = (size[0] + 1) // 2, (size[1] + 1) // 2
    x = jax.random.normal(jax.random.PRNGKey(0), (2, h, w, 3))
    params = Upsample().init(jax.random.PRNGKey(1), x, size)
    near = jax.image.resize(x, (2, 2 * h, 2 * w, 3), method="nearest")[:, :size[0], :size[1]]
    expected = jax.lax.conv_general_dilated(near, params["params"]["conv"]["kernel"], (1, 1),
                                            "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(Upsample().apply(params, x, size), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("levels", [(1,), (1, 2, 2)])
def test_w_min_gamma_hides_w_below_the_threshold_only(levels):
    """eps_hat ignores w where gamma_t < w_min_gamma and depends on it at or above."""
    enc = EncoderConfig(kind="conv", block_out_channels=8, norm_num_groups=4, w_dim=3)
    base = dict(MULTIRES, sm_ch_mult=levels, encoder=enc)
    gated, plain = ModelConfig(**base, w_min_gamma=0.0), ModelConfig(**base)
    variables = init_params(gated, jax.random.PRNGKey(0))
    variables = jax.tree_util.tree_map(  # every weight non-zero, so w can reach eps_hat
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), variables)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    g_t = jnp.array([-5.0, -0.01, 0.0, 3.0])
    w1, w2 = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 3))

    def eps(config, w, g=g_t):
        return VDMVAE(config).apply(variables, z, g, w, method=VDMVAE.score)

    change = jnp.max(jnp.abs(eps(gated, w1) - eps(gated, w2)), axis=(1, 2, 3))
    np.testing.assert_array_equal(change[:2], 0.0)
    assert float(jnp.min(change[2:])) > 1e-4
    np.testing.assert_array_equal(eps(gated, w1)[2:], eps(plain, w1)[2:])  # same net above
    np.testing.assert_array_equal(eps(gated, w1)[:2], eps(plain, jnp.zeros_like(w1))[:2])
    # a scalar gamma (the sampler's) gates the whole batch
    np.testing.assert_array_equal(eps(gated, w1, -1.0), eps(gated, w2, -1.0))


@pytest.mark.parametrize("value", [-13.3, 5.0, 7.0])
def test_w_min_gamma_outside_the_schedule_is_rejected(value):
    enc = EncoderConfig(kind="conv", block_out_channels=8, norm_num_groups=4, w_dim=3)
    with pytest.raises(ValueError, match=r"config.model.w_min_gamma=.*strictly between"):
        ModelConfig(**MULTIRES, encoder=enc, w_min_gamma=value)
