"""vdm_vae.runtime.atomic: a file is written whole or not at all."""

import json
import os

import numpy as np
import pytest

from vdm_vae.runtime import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "metrics.json")
    atomic.write_json(path, {"bpd": 1.0})
    with pytest.raises(RuntimeError):
        with atomic.replacing(path) as tmp, open(tmp, "w") as f:
            f.write('{"bpd": ')  # half written when the writer fails
            raise RuntimeError("killed mid-write")
    with open(path) as f:
        assert json.load(f) == {"bpd": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_arrays_land_at_exactly_the_path_given(tmp_path):
    path = str(tmp_path / "sub" / "bound_per_image.npz")  # the folder is made
    atomic.save_npz(path, compressed=True, bpd=np.arange(3.0), draws=1)
    atomic.save_npy(str(tmp_path / "features.npy"), np.ones((2, 4), np.float32))
    with np.load(path) as f:
        np.testing.assert_array_equal(f["bpd"], [0.0, 1.0, 2.0])
        assert int(f["draws"]) == 1
    assert np.load(tmp_path / "features.npy").shape == (2, 4)
    assert sorted(os.listdir(tmp_path)) == ["features.npy", "sub"]
    assert os.listdir(tmp_path / "sub") == ["bound_per_image.npz"]
