"""The learned prior: a w-space VDM whose bound is a density bound, its sampler, its files."""

import jax
import numpy as np
import pytest

import vdm_vae
from vdm_vae.evaluation import fitted_prior
from vdm_vae.evaluation.fit_prior import check_kl_bound
from vdm_vae.metrics import intervals

CENTERS = np.array([[3.0, 0.0], [-3.0, 0.0]])


def mixture(n, seed):
    rng = np.random.default_rng(seed)
    mean = CENTERS[rng.integers(0, 2, n)]
    return mean, np.full((n, 2), np.log(0.25))


def true_nll(w):
    logs = [-0.5 * np.sum((w - m) ** 2, 1) / 0.25 - np.log(2 * np.pi * 0.25) for m in CENTERS]
    return -(np.logaddexp(*logs) - np.log(2))


@pytest.fixture(scope="module")
def fitted():
    mean, logvar = mixture(2000, 0)
    config = fitted_prior.PriorConfig(w_dim=2, hidden=128, n_layers=2)
    params, history = fitted_prior.fit(mean, logvar, config, 1500, 256, jax.random.PRNGKey(0))
    return params, config, history


def test_bound_is_above_the_true_nll_and_far_below_the_standard_normal(fitted):
    params, config, history = fitted
    mean, logvar = mixture(2000, 1)
    w = mean + np.exp(0.5 * logvar) * np.random.default_rng(2).standard_normal(mean.shape)
    bound = np.mean([np.mean(fitted_prior.neg_elbo(params, w.astype(np.float32),
                                              jax.random.PRNGKey(i), config)) for i in range(20)])
    nll, std_normal_nll = true_nll(w).mean(), np.mean(0.5 * np.sum(w ** 2, 1) + np.log(2 * np.pi))
    assert nll - 0.05 < bound < nll + 0.3
    assert bound < std_normal_nll - 3.0
    assert history[-1] < history[0]


def test_samples_follow_the_mixture(fitted):
    params, config, _ = fitted
    s = np.asarray(fitted_prior.sample_w(params, jax.random.PRNGKey(1), config=config, num=1000))
    nearest = np.min(np.linalg.norm(s[:, None] - CENTERS[None], axis=-1), axis=1)
    assert np.mean(nearest < 1.5) > 0.85
    assert 0.3 < np.mean(s[:, 0] > 0) < 0.7


def test_save_load_roundtrip_and_sampling_images_with_it(fitted, tmp_path):
    params, config, _ = fitted
    fitted_prior.save(str(tmp_path), params, config)
    loaded, loaded_config = fitted_prior.load(str(tmp_path))
    assert loaded_config == config
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model = vdm_vae.ModelConfig(image_shape=(8, 8, 1), sm_n_layer=1, sm_n_embd=8, sm_norm_groups=4,
                                encoder=vdm_vae.EncoderConfig("conv", 8, 1, 4, 2))
    variables = vdm_vae.init(model, jax.random.PRNGKey(0))
    images = vdm_vae.sample(variables, config=model, rng=jax.random.PRNGKey(3), num_steps=2,
                            num_samples=3, fitted_prior=(loaded, loaded_config))
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.uint8
    wrong = fitted_prior.PriorConfig(w_dim=5)
    with pytest.raises(ValueError, match="w_dim"):
        vdm_vae.sample(variables, config=model, rng=jax.random.PRNGKey(3), num_steps=2,
                       num_samples=3, fitted_prior=(loaded, wrong))


def test_kl_bound_to_a_prior_equal_to_the_posterior_is_small(fitted):
    params, config, _ = fitted
    mean, logvar = mixture(512, 4)
    kl = np.asarray(fitted_prior.kl_to_prior_bound(params, mean, logvar, jax.random.PRNGKey(5),
                                                   config,
                                              draws=8))
    kl_standard = 0.5 * np.sum(mean ** 2 + np.exp(logvar) - 1 - logvar, axis=-1)
    # The aggregate posterior is the mixture, so KL(q(w|x) || p) is about log 2 per example.
    assert np.mean(kl) < 1.5 and np.mean(kl) < np.mean(kl_standard) - 2.0


def test_kl_bound_has_a_small_standard_error_and_is_not_negative(fitted):
    params, config, _ = fitted
    mean, logvar = mixture(512, 6)
    kl = np.asarray(fitted_prior.kl_to_prior_bound(params, mean, logvar, jax.random.PRNGKey(7),
                                                   config,
                                              draws=16), np.float64)
    stats = intervals.mean_interval(kl)
    assert stats["stderr"] < 0.2
    check_kl_bound(stats)  # raises if below 0 by more than 3 standard errors
    assert stats["ci_high"] > 0


def test_more_draws_shrink_the_standard_error(fitted):
    params, config, _ = fitted
    mean, logvar = mixture(512, 8)
    stderr = [intervals.mean_interval(np.asarray(fitted_prior.kl_to_prior_bound(
        params, mean, logvar, jax.random.PRNGKey(9), config, draws=d), np.float64))["stderr"]
        for d in (1, 16)]
    assert stderr[1] < 0.6 * stderr[0]


def test_a_kl_bound_far_below_zero_is_an_error_not_a_result():
    with pytest.raises(ValueError, match="bug"):
        check_kl_bound({"mean": -3.8, "stderr": 0.5})
    check_kl_bound({"mean": -0.1, "stderr": 0.5})  # noise around 0 is a result
