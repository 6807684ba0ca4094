"""config.w_film: w scales and shifts each score ResNet block's second GroupNorm (AdaGN), in both
U-Nets, starting as the model without it."""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IMAGE_SHAPE, W_DIM, perturb, random_images, tiny_config

from vdm_vae.model import objective
from vdm_vae.model.vae import VDMVAE, init_params

KEY = jax.random.PRNGKey(0)
UNETS = {"unet": {}, "multires": dict(sm_ch_mult=(1, 2))}


def _flat(params):
    return flax.traverse_util.flatten_dict(params, sep="/")


def _models(unet, **overrides):
    """(config, variables) without and with w_film, initialised from the same key."""
    off = tiny_config("conv", **UNETS[unet], **overrides)
    on = dataclasses.replace(off, w_film=True)
    return [(c, init_params(c, jax.random.PRNGKey(1))) for c in (off, on)]


@pytest.mark.parametrize("unet", UNETS)
def test_film_adds_one_zero_kernel_per_resnet_block_and_nothing_else(unet):
    (_, off), (_, on) = _models(unet)
    flat_off, flat_on = _flat(off["params"]), _flat(on["params"])
    added = sorted(set(flat_on) - set(flat_off))
    blocks = sorted(k[:-len("/conv2/kernel")] for k in flat_off
                    if k.startswith("score_model/") and k.endswith("/conv2/kernel"))
    assert len(blocks) == (5 if unet == "unet" else 8)  # every ResnetBlock of the U-Net
    assert added == [f"{b}/w_film/kernel" for b in blocks]
    for name in added:
        out_ch = flat_on[name.replace("w_film", "conv2")].shape[-1]
        assert flat_on[name].shape == (W_DIM, 2 * out_ch)
        assert not np.any(np.asarray(flat_on[name]))
    for name, value in flat_off.items():  # every other parameter as without w_film
        np.testing.assert_array_equal(flat_on[name], value, err_msg=name)


@pytest.mark.parametrize("unet", UNETS)
def test_film_starts_as_the_model_without_it(unet):
    """With the zero w_film kernels, eps_hat and every loss term equal the model without w_film,
    also when every other parameter is non-zero."""
    (c_off, off), (c_on, on) = _models(unet)
    params_off = perturb(off["params"], seed=2)
    params_on = flax.traverse_util.unflatten_dict(
        {**_flat(on["params"]), **_flat(params_off)}, sep="/")
    images = random_images(0, 4)
    out_off = VDMVAE(c_off).apply({"params": params_off}, images, rngs={"sample": KEY})
    out_on = VDMVAE(c_on).apply({"params": params_on}, images, rngs={"sample": KEY})
    for term in ("loss_recon", "loss_klz", "loss_diff", "kl_w"):
        np.testing.assert_allclose(getattr(out_on, term), getattr(out_off, term), rtol=1e-6,
                                   err_msg=term)
    z = jax.random.normal(KEY, (2,) + IMAGE_SHAPE)
    w = jax.random.normal(jax.random.PRNGKey(3), (2, W_DIM))
    eps = [VDMVAE(c).apply({"params": p}, z, jnp.array([-2.0, 1.0]), w, method=VDMVAE.score)
           for c, p in ((c_off, params_off), (c_on, params_on))]
    np.testing.assert_allclose(eps[1], eps[0], rtol=1e-6, atol=1e-6)


def _sgd_steps(config, params, images, steps, lr=0.05):
    """`steps` plain gradient steps on the mean bound in bits/dim."""
    model = VDMVAE(config)

    def bound(p):
        out = model.apply({"params": p}, images, rngs={"sample": KEY})
        return jnp.mean(objective.bpd_terms(out, config.image_shape)["bpd"])

    grad = jax.jit(jax.grad(bound))
    for _ in range(steps):
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grad(params))
    return params


def _d_eps_d_w(config, params, z, g_t, w):
    """d sum(eps_hat^2) / dw [B, w_dim]."""
    model = VDMVAE(config)
    return jax.grad(lambda w_: jnp.sum(model.apply({"params": params}, z, g_t, w_,
                                                   method=VDMVAE.score) ** 2))(w)


@pytest.mark.parametrize("unet", UNETS)
def test_w_acts_through_film_after_training_steps(unet):
    """From initialisation (conv_out and every conv2 zero), the w_film kernels get a gradient
    once conv_out and conv2 are non-zero (after two steps), and then carry w into eps_hat: the
    gradient of eps_hat w.r.t. w changes when they are zeroed."""
    _, (config, variables) = _models(unet)
    images = random_images(1, 8)
    params = _sgd_steps(config, variables["params"], images, steps=3)
    kernels = {k: v for k, v in _flat(params).items() if k.endswith("w_film/kernel")}
    assert all(np.any(np.asarray(v) != 0) for v in kernels.values())

    z = jax.random.normal(KEY, (2,) + IMAGE_SHAPE)
    g_t, w = jnp.array([-2.0, 1.0]), jax.random.normal(jax.random.PRNGKey(4), (2, W_DIM))
    with_film = _d_eps_d_w(config, params, z, g_t, w)
    no_film = flax.traverse_util.unflatten_dict(
        {k: (jnp.zeros_like(v) if k in kernels else v) for k, v in _flat(params).items()},
        sep="/")
    without = _d_eps_d_w(config, no_film, z, g_t, w)
    assert np.abs(np.asarray(with_film)).max() > 0
    assert np.abs(np.asarray(with_film - without)).max() > 1e-3 * np.abs(without).max()


def test_the_w_gate_also_holds_for_film():
    """With w_min_gamma, eps_hat ignores w where gamma_t < w_min_gamma, the FiLM path too."""
    config = tiny_config("conv", w_film=True, w_min_gamma=0.0)
    params = perturb(init_params(config, jax.random.PRNGKey(1))["params"], seed=5)
    model, z = VDMVAE(config), jax.random.normal(KEY, (2,) + IMAGE_SHAPE)
    g_t = jnp.array([-2.0, 1.0])  # gated off, on
    w1, w2 = jax.random.normal(jax.random.PRNGKey(6), (2, 2, W_DIM))
    eps = [model.apply({"params": params}, z, g_t, w, method=VDMVAE.score) for w in (w1, w2)]
    np.testing.assert_array_equal(eps[0][0], eps[1][0])
    assert np.abs(np.asarray(eps[0][1] - eps[1][1])).max() > 1e-3


def test_film_without_an_encoder_names_the_field():
    with pytest.raises(ValueError, match="w_film=True"):
        tiny_config("none", w_film=True)
