"""What a refactoring must not change: parameter trees, and checkpoints written before it.

The fixtures come from tests/fixtures/make_fixtures.py, run before the package's layout moved.
"""

import json
import os

import numpy as np
import pytest
from conftest import ROOT

FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def _make_fixtures():
    from conftest import load_module

    return load_module(os.path.join(FIXTURES, "make_fixtures.py"))


@pytest.mark.parametrize("name", ["mvdm", "mvdm_oe", "tvdm", "tvdm_oe", "svdm", "svdm_oe",
                                  "mnist_cpu", "mnist_cpu:uncond"])
def test_parameter_paths_and_shapes_are_the_pinned_ones(name):
    with open(os.path.join(FIXTURES, "param_paths.json")) as f:
        pinned = json.load(f)[name]
    file, _, arg = name.partition(":")
    assert _make_fixtures().param_shapes(file, arg or None) == pinned


def test_a_checkpoint_written_before_the_layout_moved_restores():
    from vdm_vae import load

    params, model_config = load(os.path.join(FIXTURES, "smoke_run"))
    with open(os.path.join(FIXTURES, "smoke_run_sums.json")) as f:
        pinned = json.load(f)
    sums = _make_fixtures().parameter_sums(params)
    assert sorted(sums) == sorted(pinned)
    np.testing.assert_allclose([sums[k] for k in sorted(sums)],
                               [pinned[k] for k in sorted(pinned)], rtol=1e-6, atol=1e-6)
    assert model_config.encoder.w_dim == 8
