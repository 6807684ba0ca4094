"""experiments/kernel_gradient_forms.py: each formulation computes the kernel gradient."""

import numpy as np
from conftest import load_experiment


def _kernel_gradient(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dk[i, j, c, d] = sum over n, h, w of x_pad[n, h + i, w + j, c] g[n, h, w, d], in float64."""
    size = x.shape[1]
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return np.stack([np.stack([np.einsum("nhwc,nhwd->cd", xp[:, i:i + size, j:j + size], g)
                               for j in range(3)]) for i in range(3)])


def test_every_form_is_the_kernel_gradient_of_the_3x3_convolution():
    kgf = load_experiment("kernel_gradient_forms")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5, 5, 3)).astype(np.float32)  # 8 images: batch_groups splits them
    g = rng.normal(size=(8, 5, 5, 4)).astype(np.float32)
    want = _kernel_gradient(x, g)
    forms = kgf.forms(5)
    assert len(forms) == 7
    for name, fn in forms.items():
        np.testing.assert_allclose(np.asarray(fn(x, g)), want, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_quick_run_checks_every_form_without_timing():
    rows = load_experiment("kernel_gradient_forms").main(["--quick"])
    assert [(r["n"], r["channels"]) for r in rows] == [(8, 3), (3, 4)]
    for r in rows:
        assert all(f["relative_difference"] < 1e-5 and "seconds" not in f
                   for f in r["forms"].values())
