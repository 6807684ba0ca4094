"""Paired bound evaluation and its intervals on constructed cases (tiny models, seconds)."""

import flax
import jax
import numpy as np
import pytest
from conftest import perturb, random_images, tiny_config

from vdm_vae.evaluation import paired
from vdm_vae.metrics import intervals
from vdm_vae.model.vae import init_params

N = 32


@pytest.fixture(scope="module")
def model():
    """(config, variables) of a tiny unconditional model with every weight active."""
    config = tiny_config("none")
    return config, perturb(init_params(config, jax.random.PRNGKey(0)), 0)


def _bound(variables, config, images, **kwargs):
    return paired.per_image_bound(variables, images, config, batch_size=N, **kwargs)


def _overlap(a: dict, b: dict) -> bool:
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


def test_same_checkpoint_twice_differs_by_exactly_zero(model):
    config, variables = model
    images = random_images(0, N)
    a = _bound(variables, config, images, draws=2)
    b = _bound(variables, config, images, draws=2)
    for term in paired.TERMS:
        diff = intervals.paired_difference(a[term], b[term])
        assert diff["mean"] == 0.0 and diff["stderr"] == 0.0
        assert diff["ci_low"] == 0.0 == diff["ci_high"]


def test_result_does_not_depend_on_the_batch_size(model):
    config, variables = model
    images = random_images(1, 12)
    a = paired.per_image_bound(variables, images, config, draws=2, batch_size=12)
    b = paired.per_image_bound(variables, images, config, draws=2, batch_size=5)
    for term in paired.TERMS:
        np.testing.assert_allclose(a[term], b[term], rtol=1e-5)


def test_conditional_and_unconditional_models_see_the_same_noise(model):
    """With the same schedule, the terms that do not involve w are equal image by image,
    though the conditional model also draws w."""
    config, variables = model
    cond_config = tiny_config("conv")
    cond = perturb(init_params(cond_config, jax.random.PRNGKey(1)), 1)
    cond = {"params": dict(cond["params"], gamma=variables["params"]["gamma"])}
    images = random_images(2, N)
    a = _bound(variables, config, images, draws=2)
    b = _bound(cond, cond_config, images, draws=2)
    for term in ("bpd_recon", "bpd_prior"):
        np.testing.assert_array_equal(a[term], b[term])
    assert np.all(b["bpd_kl_w"] > 0) and not np.allclose(a["bpd_diff"], b["bpd_diff"])


def test_antithetic_draws_stratify_time():
    ids = np.arange(4)
    times = np.stack([np.asarray(paired.paired_noise(0, ids, k, 4, (8, 8, 1))[0])
                      for k in range(4)])  # [K, B]
    np.testing.assert_allclose(np.sort(np.mod(times - times[0], 1.0), axis=0),
                               np.tile([[0.0], [0.25], [0.5], [0.75]], (1, 4)), atol=1e-6)


def test_perturbed_weight_is_detected_only_when_paired(model):
    config, variables = model
    flat = dict(flax.traverse_util.flatten_dict(variables["params"]))
    key = ("score_model", "conv_out", "bias")
    flat[key] = flat[key] + 0.05
    perturbed = {"params": flax.traverse_util.unflatten_dict(flat)}
    images = random_images(3, N)
    a = _bound(variables, config, images, draws=2)
    b = _bound(perturbed, config, images, draws=2)
    diff = intervals.paired_difference(b["bpd"], a["bpd"])
    assert diff["ci_high"] < 0 or diff["ci_low"] > 0, diff
    assert _overlap(intervals.mean_interval(a["bpd"]), intervals.mean_interval(b["bpd"]))
    assert diff["stderr"] < 0.2 * diff["unpaired_stderr"]


def test_interval_covers_zero_about_95_percent_of_the_time(model):
    """A model against itself evaluated with different seeds: the true difference is 0."""
    config, variables = model
    images = random_images(4, N)
    repeats = 100
    covered = 0
    for r in range(repeats):
        a = _bound(variables, config, images, seed=2 * r + 1, desc="a")
        b = _bound(variables, config, images, seed=2 * r + 2, desc="b")
        diff = intervals.paired_difference(a["bpd"], b["bpd"])
        covered += diff["ci_low"] <= 0.0 <= diff["ci_high"]
    assert 88 <= covered <= 99, covered


def test_wilson_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        stats = intervals.wilson_interval(rng.random(200) < 0.8)
        covered += stats["ci_low"] <= 0.8 <= stats["ci_high"]
    assert 0.92 <= covered / 400 <= 0.98, covered


def test_wilson_interval_of_all_wrong_is_zero_to_positive():
    stats = intervals.wilson_interval(np.zeros(50, bool))
    assert stats["mean"] == 0.0 and abs(stats["ci_low"]) < 1e-12 and 0 < stats["ci_high"] < 0.1


def test_paired_accuracy_difference_counts_only_disagreements():
    a = np.array([True] * 90 + [False] * 10)
    b = a.copy()
    b[:5] = False  # b is wrong on 5 images a gets right, and agrees elsewhere
    diff = intervals.paired_accuracy_difference(a, b)
    assert diff["mean"] == pytest.approx(0.05)
    assert diff["ci_low"] > 0  # 5 of 5 disagreements favour a
    same = intervals.paired_accuracy_difference(a, a)
    assert same["mean"] == 0 and same["stderr"] == 0 and same["unpaired_stderr"] > 0
