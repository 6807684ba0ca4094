"""The prior p(w) learned with the model: density, draws, the KL estimate and its plumbing."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import W_DIM, perturb, random_images, tiny_config

from vdm_vae.model import objective
from vdm_vae.model.config import LossConfig
from vdm_vae.model.mixture_prior import MixturePrior
from vdm_vae.model.vae import VDMVAE, init_params
from vdm_vae.sampling import draw_prior_w, sample

KEY = jax.random.PRNGKey(0)


def _mixture_variables(k, d, seed=0):
    """Mixture parameters with distinct means and scales."""
    rng = np.random.default_rng(seed)
    return {"params": {"means": jnp.asarray(2.0 * rng.normal(size=(k, d)), jnp.float32),
                       "log_scales": jnp.asarray(0.5 * rng.normal(size=(k, d)), jnp.float32)}}


def test_log_prob_is_the_mixture_density():
    k, d = 3, 4
    variables = _mixture_variables(k, d)
    w = np.random.default_rng(1).normal(size=(5, d))
    got = MixturePrior(k, d).apply(variables, jnp.asarray(w, jnp.float32))

    p = {n: np.asarray(v, np.float64) for n, v in variables["params"].items()}
    weights = np.full(k, 1.0 / k)
    density = np.zeros(len(w))
    for j in range(k):
        s = np.exp(p["log_scales"][j])
        density += weights[j] * np.prod(
            np.exp(-0.5 * ((w - p["means"][j]) / s) ** 2) / (np.sqrt(2 * np.pi) * s), axis=-1)
    np.testing.assert_allclose(got, np.log(density), rtol=1e-5)


def test_draws_follow_the_mixture():
    k, d, n = 3, 2, 60_000
    variables = _mixture_variables(k, d, seed=2)
    w = np.asarray(MixturePrior(k, d).apply(variables, KEY, n, method=MixturePrior.sample))
    p = {name: np.asarray(v, np.float64) for name, v in variables["params"].items()}
    weights = np.full(k, 1.0 / k)
    mean = weights @ p["means"]
    second = weights @ (p["means"] ** 2 + np.exp(2 * p["log_scales"]))
    np.testing.assert_allclose(w.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(w.var(0), second - mean ** 2, rtol=0.05)


def _mixture_model(k=2):
    config = tiny_config("conv", w_prior_components=k)
    variables = init_params(config, jax.random.PRNGKey(1))
    params = dict(variables["params"])
    params["encoder"] = perturb(params["encoder"], seed=3)
    return config, {"params": params}


def _standard_prior_kl(config, params, images):
    """KL(q(w|x) || N(0, I)) [B] in closed form: the same encoder with p(w) = N(0, I)."""
    standard = dataclasses.replace(config, w_prior_components=0)
    params = {name: value for name, value in params.items() if name != "w_prior"}
    out = VDMVAE(standard).apply({"params": params}, images, rngs={"sample": KEY})
    return np.asarray(out.kl_w)


def test_a_one_component_standard_mixture_estimates_the_closed_form_kl():
    """With p(w) = N(0, I) as a one-component mixture, the KL estimate averages to the
    closed form of KL(q(w|x) || N(0, I)): the estimate is unbiased."""
    config, variables = _mixture_model(k=1)
    params = dict(variables["params"])
    params["w_prior"] = {"means": jnp.zeros((1, W_DIM)),
                         "log_scales": jnp.zeros((1, W_DIM))}
    model, images = VDMVAE(config), random_images(0, 4)
    draws = 400
    outs = jax.vmap(lambda r: model.apply({"params": params}, images, rngs={"sample": r}))(
        jax.random.split(KEY, draws))
    closed = _standard_prior_kl(config, params, images)
    assert outs.kl_w_per_dim.shape[-1] == 0  # no per-dimension form under a mixture
    estimates = np.asarray(outs.kl_w, np.float64)  # [draws, B]
    assert np.all(closed > 0.1)
    stderr = estimates.std(0) / np.sqrt(draws)
    assert np.all(stderr > 0)  # a draw-dependent estimate, not the closed form itself
    assert np.all(np.abs(estimates.mean(0) - closed) < 5 * stderr)


def test_the_bound_and_the_objective_use_the_mixture_kl():
    config, variables = _mixture_model()
    images = random_images(1, 4)
    out = VDMVAE(config).apply(variables, images, rngs={"sample": KEY})
    assert not np.allclose(out.kl_w, _standard_prior_kl(config, variables["params"], images))
    np.testing.assert_allclose(out.total, out.loss_recon + out.loss_klz + out.loss_diff
                               + out.kl_w, rtol=1e-6)
    shape = config.image_shape
    for capacity in (0.0, 3.0):
        loss = LossConfig(capacity=capacity)
        got = objective.training_objective(out, loss, shape, jnp.asarray(1.0))
        kl = np.abs(out.kl_w - capacity) if capacity else out.kl_w
        want = np.mean(out.loss_recon + out.loss_klz + out.loss_diff + kl) / (
            np.prod(shape) * np.log(2.0))
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_prior_learns_with_the_model():
    """The prior's parameters get a gradient from the bound."""
    config, variables = _mixture_model()
    images = random_images(2, 4)

    def bound(params):
        return jnp.mean(VDMVAE(config).apply({"params": params}, images,
                                             rngs={"sample": KEY}).total)

    grads = jax.grad(bound)(variables["params"])["w_prior"]
    for name in ("means", "log_scales"):
        assert np.any(np.abs(np.asarray(grads[name])) > 0), name


def test_samples_draw_w_from_the_models_mixture():
    config, variables = _mixture_model(k=2)
    params = dict(variables["params"])
    means = jnp.stack([jnp.full((W_DIM,), 5.0), jnp.full((W_DIM,), -5.0)])
    params["w_prior"] = {"means": means, "log_scales": jnp.full((2, W_DIM), -8.0)}
    w = np.asarray(draw_prior_w({"params": params}, config, 400, KEY))
    np.testing.assert_allclose(np.abs(w), 5.0, atol=1e-2)
    assert 150 < np.sum(w[:, 0] > 0) < 250  # equal weights

    params["w_prior"] = {"means": jnp.full((2, W_DIM), 5.0),
                         "log_scales": jnp.full((2, W_DIM), -8.0)}

    # `sample` with w None conditions on those draws: equal to passing them in explicitly.
    rng = jax.random.PRNGKey(3)
    drawn = sample(params, config=config, rng=rng, num_steps=3, num_samples=2)
    explicit = sample(params, jnp.full((2, W_DIM), 5.0), config=config, rng=rng, num_steps=3)
    np.testing.assert_array_equal(drawn, explicit)


def test_a_standard_prior_keeps_its_closed_form_and_parameter_tree(cond):
    config, variables = cond
    assert "w_prior" not in variables["params"]
    out = VDMVAE(config).apply(variables, random_images(3, 2), rngs={"sample": KEY})
    np.testing.assert_allclose(out.kl_w, np.asarray(out.kl_w_per_dim).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (dict(kind="none", w_prior_components=3), "w_prior_components=3"),
    (dict(w_prior_components=-1), "w_prior_components=-1"),
    (dict(w_prior_components=4, loss=LossConfig(free_bits=0.1)), "free_bits"),
    (dict(w_prior_components=4, loss=LossConfig(mmd_weight=1.0)), "mmd_weight"),
])
def test_bad_mixture_settings_name_the_field(overrides, message):
    kind = overrides.pop("kind", "conv")
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(tiny_config(kind), **overrides)
