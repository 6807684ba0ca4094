"""Loads a data set and prints a summary: `python -m vdm_vae.data mnist`.

Also `synthetic`, `npz --path FILE`, `tfds --name cifar10`, and `mnist --path FILE`.
"""

import argparse
import hashlib
import time
from typing import List, Optional

import numpy as np
from absl import logging

from vdm_vae.data.sources import SOURCES, Dataset, load_dataset
from vdm_vae.runtime import cli


def describe(dataset: Dataset) -> str:
    """Split sizes, image shape, dtype, test label counts and pixel checksums."""
    height, width, channels = dataset.image_shape
    rows = [
        ("dataset", dataset.name),
        ("train", f"{dataset.train_images.shape[0]} images"),
        ("test", f"{dataset.test_images.shape[0]} images"),
        ("image shape", f"{height}x{width}x{channels}"),
        ("dtype", str(dataset.train_images.dtype)),
    ]
    if dataset.test_labels is not None:
        classes, counts = np.unique(dataset.test_labels, return_counts=True)
        counts_text = ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=True))
        rows.append(("test labels", counts_text))
    for split in ("train", "test"):
        pixels = np.ascontiguousarray(getattr(dataset, f"{split}_images"))
        rows.append((f"sha256 {split}", hashlib.sha256(pixels).hexdigest()))
    lines = [f"{key + ':':14s}{value}" for key, value in rows]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    """Parses the command line, loads the data set and prints `describe`."""
    parser = argparse.ArgumentParser(prog="python -m vdm_vae.data", description=__doc__)
    parser.add_argument("source", choices=SOURCES, help="config.data.source")
    parser.add_argument("--path", default="", help="config.data.path (npz; optional for mnist)")
    parser.add_argument("--name", default="", help="config.data.name (TFDS data set)")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    start = time.perf_counter()
    dataset = cli.run_or_exit(
        lambda: load_dataset({"source": args.source, "path": args.path, "name": args.name}))
    print(describe(dataset))
    print(f"{'loaded in:':14s}{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
