"""experiments/pair_bounds.py: two evaluated runs' bounds, paired image by image."""

import importlib.util
import json
import os

import numpy as np
import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "pair_bounds", os.path.join(ROOT, "experiments", "pair_bounds.py"))
pair_bounds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pair_bounds)


def _run(root, name: str, bpd, draws: int = 1) -> str:
    os.makedirs(root / name / "eval")
    bpd = np.asarray(bpd, np.float64)
    np.savez(root / name / "eval" / "bound_per_image.npz", seed=0, draws=draws, bpd=bpd,
             bpd_diff=bpd - 0.01)
    return str(root / name)


def test_the_difference_is_paired_image_by_image(tmp_path, capsys):
    shared = np.random.default_rng(0).normal(1.0, 0.1, size=500)  # the images' own spread
    a, b = _run(tmp_path, "a", shared + 0.003), _run(tmp_path, "b", shared)
    pair_bounds.main([a, b, "--json", str(tmp_path / "d.json")])
    diff = json.loads((tmp_path / "d.json").read_text())["a_minus_b"]
    assert set(diff) == {"bpd", "bpd_diff"}
    np.testing.assert_allclose([diff["bpd"]["mean"], diff["bpd"]["stderr"]], [0.003, 0.0],
                               atol=1e-12)
    assert diff["bpd"]["unpaired_stderr"] > 0.005  # what an unpaired comparison would have
    assert "| bpd | 0.0030 [0.0030, 0.0030] |" in capsys.readouterr().out


def test_runs_evaluated_differently_are_refused_with_one_line(tmp_path):
    a, b = _run(tmp_path, "a", np.ones(4)), _run(tmp_path, "b", np.ones(4), draws=4)
    with pytest.raises(SystemExit, match=r"draws differs \(1 in .*a, 4 in .*b\)"):
        pair_bounds.main([a, b])
    c = _run(tmp_path, "c", np.ones(5))
    with pytest.raises(SystemExit, match=r"evaluated on 4 and 5 test images"):
        pair_bounds.main([a, c])
    with pytest.raises(SystemExit, match=r"bound_per_image.npz does not exist"):
        pair_bounds.main([a, str(tmp_path / "missing")])
