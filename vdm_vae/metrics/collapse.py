"""Posterior-collapse diagnostics for a diagonal Gaussian encoder.

The posterior is q(w|x) = N(mean, diag(exp(logvar))) and the prior p(w) = N(0, I). All
functions take the encoder outputs for N data points, `mean` and `logvar` of shape [N, D], as
numpy or JAX arrays, and return numpy values.
"""

import math

import jax
import numpy as np
import numpy.typing as npt

_LOG_2PI = math.log(2.0 * math.pi)

RngLike = int | np.random.Generator | jax.Array


def _check_posterior(mean, logvar=None) -> tuple[np.ndarray, np.ndarray]:
    """Converts to float64 [N, D] arrays; raises ValueError on bad shapes or values."""
    mean = np.asarray(mean, np.float64)
    if mean.ndim != 2 or mean.shape[0] < 1 or mean.shape[1] < 1:
        raise ValueError(f"mean must have shape [N, D] with N, D >= 1, got {mean.shape}.")
    if not np.all(np.isfinite(mean)):
        raise ValueError("mean must be finite, got NaN or infinite entries.")
    if logvar is None:
        return mean, None
    logvar = np.asarray(logvar, np.float64)
    if logvar.shape != mean.shape:
        raise ValueError(f"logvar must have the shape of mean {mean.shape}, got {logvar.shape}.")
    if not np.all(np.isfinite(logvar)):
        raise ValueError("logvar must be finite, got NaN or infinite entries.")
    return mean, logvar


def kl_per_dim(mean: npt.ArrayLike, logvar: npt.ArrayLike) -> np.ndarray:
    """KL(q(w_d|x_n) || N(0, 1)) for every data point and dimension, in nats.

    Args:
        mean: posterior means [N, D].
        logvar: posterior log-variances [N, D].

    Returns:
        [N, D] float64 array: 0.5 * (mean^2 + exp(logvar) - 1 - logvar).
    """
    mean, logvar = _check_posterior(mean, logvar)
    return 0.5 * (np.square(mean) + np.exp(logvar) - 1.0 - logvar)


def active_units(mean: npt.ArrayLike, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Active units of Burda et al. (2016): dimensions whose posterior mean varies with x.

    Dimension d is active if Var_x(E_q[w_d | x]) > threshold, the variance (over data points) of
    the posterior mean.

    Args:
        mean: posterior means [N, D].
        threshold: activity threshold on the variance, >= 0 (0.01 in the paper).

    Returns:
        (count, variances): the number of active dimensions and the per-dimension variances [D].
    """
    mean, _ = _check_posterior(mean)
    if not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold}.")
    variances = np.var(mean, axis=0)
    return int(np.sum(variances > threshold)), variances


def _as_generator(rng_or_seed: RngLike) -> np.random.Generator:
    """A numpy Generator from an int seed, a Generator or a JAX PRNG key."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        return np.random.default_rng(int(rng_or_seed))
    if isinstance(rng_or_seed, jax.Array):
        seed = jax.random.randint(rng_or_seed, (), 0, np.iinfo(np.int32).max)
        return np.random.default_rng(int(seed))
    raise ValueError("rng_or_seed must be an int seed, a numpy Generator or a JAX PRNG key, "
                     f"got {type(rng_or_seed).__name__}.")


def _log_q_all(w: np.ndarray, mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log N(w_m; mean_n, exp(logvar_n)) for every pair (m, n), as two matrix products.

    Args:
        w: samples [M, D], centred like `mean`.
        mean: posterior means [N, D].
        logvar: posterior log-variances [N, D].

    Returns:
        [M, N] float64 log-densities.
    """
    precision = np.exp(-logvar)
    const = -0.5 * (np.sum(np.square(mean) * precision + logvar, axis=1) + mean.shape[1] * _LOG_2PI)
    quad = np.square(w) @ precision.T - 2.0 * (w @ (mean * precision).T)
    return const[None, :] - 0.5 * quad


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """Numerically stable log(sum(exp(a), axis=1)) for a [M, N] array."""
    peak = np.max(a, axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.sum(np.exp(a - peak), axis=1))


def mutual_information(mean: npt.ArrayLike, logvar: npt.ArrayLike, rng_or_seed: RngLike,
                       num_samples_per_x: int = 1, max_points: int = 10_000,
                       chunk_size: int = 512) -> float:
    """The mean of `mutual_information_terms` (same arguments), in nats."""
    return float(np.mean(mutual_information_terms(mean, logvar, rng_or_seed, num_samples_per_x,
                                                  max_points, chunk_size)))


def mutual_information_stderr(terms: npt.ArrayLike) -> float:
    """Monte Carlo standard error of the estimate from its per-point terms [N] (N >= 2).

    It treats the terms as independent, which ignores that they share the aggregate
    posterior; it measures the noise of the draws of w and of the points used.
    """
    terms = np.asarray(terms, np.float64)
    return float(np.std(terms, ddof=1) / math.sqrt(len(terms)))


def mutual_information_terms(mean: npt.ArrayLike, logvar: npt.ArrayLike, rng_or_seed: RngLike,
                             num_samples_per_x: int = 1, max_points: int = 10_000,
                             chunk_size: int = 512) -> np.ndarray:
    """Per-point terms of a Monte Carlo estimate of the mutual information I(x; w), in nats.

    I(x; w) = E_x KL(q(w|x) || q(w)) with the aggregate posterior q(w) = (1/N) sum_n q(w|x_n),
    the x_n being the N data points (Hoffman & Johnson, 2016; Dieng et al., 2019). For samples
    w_i ~ q(w|x_i) the estimate is the mean over i of log q(w_i|x_i) - log q(w_i), with
    log q(w_i) = logsumexp_n log q(w_i|x_n) - log N (a log-mean-exp of densities, never a mean of
    log-densities).

    Because the term n = i is part of the sum, every summand is at most log N: the estimate is
    bounded above by log N (log max_points when subsampling), reached by N distinct,
    well-separated deterministic codes. A posterior that ignores x gives about 0.

    The [samples, N] density matrix is built in row chunks with float64 matrix products, so
    N = 10,000 points of dimension 256 take a few seconds and about chunk_size * N * 8 bytes.

    Args:
        mean: posterior means [N, D].
        logvar: posterior log-variances [N, D].
        rng_or_seed: int seed, numpy Generator or JAX PRNG key for the samples (and subsampling).
        num_samples_per_x: samples drawn from each q(w|x_i), >= 1.
        max_points: if N exceeds it, a random subset of this many points is used for both the
            outer expectation and the aggregate posterior.
        chunk_size: samples per chunk of the density matrix, >= 1.

    Returns:
        [min(N, max_points)] float64: for each point i, log q(w_i|x_i) - log q(w_i) averaged
        over its samples; their mean is the estimate, in nats (<= log min(N, max_points)).
    """
    mean, logvar = _check_posterior(mean, logvar)
    for name, value in (("num_samples_per_x", num_samples_per_x), ("max_points", max_points),
                        ("chunk_size", chunk_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    rng = _as_generator(rng_or_seed)
    if mean.shape[0] > max_points:
        keep = rng.choice(mean.shape[0], size=max_points, replace=False)
        mean, logvar = mean[keep], logvar[keep]
    n = mean.shape[0]
    # Centring shrinks the terms of the expanded quadratic, limiting cancellation error.
    mean = mean - np.mean(mean, axis=0)
    total = np.zeros(n, np.float64)
    for _ in range(num_samples_per_x):
        eps = rng.standard_normal(mean.shape)
        w = mean + np.exp(0.5 * logvar) * eps
        log_q_own = -0.5 * np.sum(np.square(eps) + logvar + _LOG_2PI, axis=1)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            log_q = _log_q_all(w[start:stop], mean, logvar)
            rows = np.arange(stop - start)
            log_q[rows, start + rows] = log_q_own[start:stop]  # exact n = i terms
            log_q_agg = _logsumexp_rows(log_q) - math.log(n)
            total[start:stop] += log_q_own[start:stop] - log_q_agg
    return total / num_samples_per_x
