"""Shipped weights: export from a run, load by name, and the demo figure drawn from them."""

import os

import jax
import numpy as np
import pytest
from conftest import ROOT

from vdm_vae import demo, pretrained
from vdm_vae.training.checkpoints import load as load_run

RUN = os.path.join(ROOT, "tests", "fixtures", "smoke_run")  # mvdm_oe:smoke, synthetic data


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path / "weights"))
    os.makedirs(tmp_path / "weights")
    meta = pretrained.export(RUN, str(tmp_path / "weights" / "tiny.npz"), source="make_fixtures")
    return meta


def test_weights_load_by_name_as_the_run_rounded_to_float16(shipped):
    params, config = pretrained.load("tiny")
    want, want_config = load_run(RUN)
    assert config == want_config and pretrained.available() == ["tiny"]
    got, ref = jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(want)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, np.asarray(b).astype(np.float16).astype(np.float32))
    assert shipped["run"] == "smoke_run" and shipped["step"] == 2
    assert pretrained.info("tiny")["source"] == "make_fixtures"
    assert pretrained.test_images("tiny").shape == (pretrained.NUM_IMAGES, 8, 8, 1)


def test_a_workdir_still_loads_and_unknown_names_say_what_exists(shipped):
    assert jax.tree_util.tree_structure(pretrained.load(RUN)[0]) == \
        jax.tree_util.tree_structure(load_run(RUN)[0])
    with pytest.raises(ValueError, match=r"no shipped weights named 'nope': expected one of "
                                         r"\['tiny'\]"):
        pretrained.path_of("nope")
    with pytest.raises(ValueError, match="step=3"):
        pretrained.load("tiny", step=3)
    with pytest.raises(ValueError, match="no fitted prior"):
        pretrained.load_fitted_prior("tiny")


def test_demo_rows_from_shipped_weights(shipped, tmp_path):
    figure = demo.rows("tiny", num=3, steps=2, seed=0)
    assert list(figure) == ["samples", "test images", "reconstructions", "guided",
                            "interpolation", "w only"]
    assert all(v.shape == (3, 8, 8, 1) and v.dtype == np.uint8 for v in figure.values())
    np.testing.assert_array_equal(figure["test images"], pretrained.test_images("tiny")[:3])
    # The interpolation's ends are the first two reconstructions (same w and z_1).
    np.testing.assert_array_equal(figure["interpolation"][0], figure["reconstructions"][0])
    np.testing.assert_array_equal(figure["interpolation"][-1], figure["reconstructions"][1])


def test_slerp_keeps_the_ends_and_the_norm_of_orthogonal_codes():
    a, b = np.zeros((2, 2, 1)), np.zeros((2, 2, 1))
    a[0, 0, 0], b[1, 1, 0] = 3.0, 3.0
    path = demo.slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path.reshape(5, -1), axis=1), 3.0)
