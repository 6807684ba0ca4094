"""Standard errors and 95% confidence intervals for means, paired differences and accuracies.

Every function takes per-item values over the same N test items (numpy or JAX arrays) and
returns plain floats, so the results go straight into JSON.
"""

import math
from typing import Dict

import numpy as np
import numpy.typing as npt
import scipy.stats

LEVEL = 0.95


def _values(values: npt.ArrayLike, name: str = "values") -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"{name} must have shape [N] with N >= 2, got {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got NaN or infinite entries.")
    return values


def mean_interval(values: npt.ArrayLike, level: float = LEVEL) -> Dict[str, float]:
    """Mean of values [N], its standard error and a Student-t confidence interval.

    Returns:
      {"mean", "stderr", "ci_low", "ci_high", "n"}.
    """
    values = _values(values)
    n = len(values)
    mean = float(np.mean(values))
    stderr = float(np.std(values, ddof=1) / math.sqrt(n))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * stderr
    return {"mean": mean, "stderr": stderr, "ci_low": mean - half, "ci_high": mean + half,
            "n": n}


def paired_difference(a: npt.ArrayLike, b: npt.ArrayLike, level: float = LEVEL
                      ) -> Dict[str, float]:
    """Mean of a - b over paired items [N], its interval, and the unpaired standard error.

    `unpaired_stderr` is sqrt(se(a)^2 + se(b)^2), what the difference of two independent
    evaluations would have; the paired `stderr` is smaller when a and b share their noise.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must be paired (same shape), got {a.shape} and {b.shape}.")
    result = mean_interval(a - b, level)
    se = lambda v: np.std(v, ddof=1) / math.sqrt(len(v))  # noqa: E731
    result["unpaired_stderr"] = float(math.hypot(se(a), se(b)))
    return result


def independent_difference(a: npt.ArrayLike, b: npt.ArrayLike, level: float = LEVEL
                           ) -> Dict[str, float]:
    """mean(a) - mean(b) for independent samples a [N], b [M], with Welch's interval.

    Returns:
      {"mean", "stderr", "ci_low", "ci_high", "df"}.
    """
    a, b = _values(a, "a"), _values(b, "b")
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    stderr = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if stderr else 1.0
    mean = float(np.mean(a) - np.mean(b))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, df)) * stderr
    return {"mean": mean, "stderr": stderr, "ci_low": mean - half, "ci_high": mean + half,
            "df": float(df)}


def wilson_interval(correct: npt.ArrayLike, level: float = LEVEL) -> Dict[str, float]:
    """Accuracy of per-item outcomes correct [N] (bool) with its Wilson score interval."""
    correct = np.asarray(correct)
    if correct.ndim != 1 or correct.shape[0] < 1:
        raise ValueError(f"correct must have shape [N] with N >= 1, got {correct.shape}.")
    n = len(correct)
    p = float(np.mean(correct))
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"mean": p, "ci_low": centre - half, "ci_high": centre + half, "n": n}


def paired_accuracy_difference(correct_a: npt.ArrayLike, correct_b: npt.ArrayLike,
                               level: float = LEVEL) -> Dict[str, float]:
    """Accuracy of a minus accuracy of b on the same items [N], with a paired interval.

    The interval is the Wald interval on the per-item differences (the one that goes with
    McNemar's test): only the items where a and b disagree add to its width.
    """
    a = np.asarray(correct_a, np.float64)
    b = np.asarray(correct_b, np.float64)
    return paired_difference(a, b, level)


def format_interval(stats: Dict[str, float], digits: int = 4) -> str:
    """'mean [low, high]' with `digits` decimals."""
    return (f"{stats['mean']:.{digits}f} [{stats['ci_low']:.{digits}f}, "
            f"{stats['ci_high']:.{digits}f}]")
