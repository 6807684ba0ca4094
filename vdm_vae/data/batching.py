"""Batches from in-memory arrays: a resumable, multi-host training stream and eval passes.

The training order is a pure function of (seed, global step): concatenate the
per-epoch permutations (epoch e permuted by `np.random.default_rng([seed, e])`);
global step k uses positions [k*B, (k+1)*B) of that sequence. Every host computes
the same order and keeps its own contiguous slice of each global batch.
"""

from typing import Dict, Iterator, Optional, Tuple

import numpy as np


def check_batch_size(batch_size: int, num_devices: int,
                     field: str = "config.training.batch_size") -> int:
    """Per-device batch size.

    Args:
      batch_size: global batch size.
      num_devices: devices the batch is split over.
      field: config field holding `batch_size`, named in errors.

    Returns:
      batch_size // num_devices.

    Raises:
      ValueError: batch_size is not a positive multiple of num_devices.
    """
    if num_devices < 1:
        raise ValueError(f"num_devices={num_devices!r} is invalid: expected a positive int.")
    if batch_size < 1 or batch_size % num_devices:
        raise ValueError(f"{field}={batch_size!r} cannot be split over {num_devices} devices: "
                         f"expected a positive multiple of {num_devices}.")
    return batch_size // num_devices


class _EpochOrder:
    """Maps positions of the endless shuffled sequence to example indices."""

    def __init__(self, num_examples: int, seed: int):
        self._num_examples = num_examples
        self._seed = seed
        self._permutations: Dict[int, np.ndarray] = {}

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Example indices int64 [...] at `positions` int64 [...] of the sequence."""
        epochs, offsets = np.divmod(positions, self._num_examples)
        # Only the epochs still ahead are kept: positions never move backwards.
        first_epoch = int(epochs.min())
        self._permutations = {e: p for e, p in self._permutations.items() if e >= first_epoch}
        result = np.empty_like(positions)
        for epoch in np.unique(epochs).tolist():
            in_epoch = epochs == epoch
            result[in_epoch] = self._permutation(epoch)[offsets[in_epoch]]
        return result

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            rng = np.random.default_rng([self._seed, epoch])
            self._permutations[epoch] = rng.permutation(self._num_examples)
        return self._permutations[epoch]


def _check_train_args(images: np.ndarray, *, substeps: int, seed: int, start_step: int,
                      process_index: int, process_count: int) -> None:
    """Raises ValueError naming the first invalid argument of `train_batches`."""
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images has shape {images.shape}: expected [N, H, W, C], N >= 1.")
    checks = (
        ("substeps", substeps, substeps >= 1, "a positive int"),
        ("seed", seed, seed >= 0, "an int >= 0"),
        ("start_step", start_step, start_step >= 0, "an int >= 0"),
        ("process_count", process_count, process_count >= 1, "a positive int"),
        ("process_index", process_index, 0 <= process_index < process_count,
         f"an int in [0, {process_count})"),
    )
    for field, value, valid, accepted in checks:
        if not valid:
            raise ValueError(f"{field}={value!r} is invalid: expected {accepted}.")


def train_batches(images: np.ndarray, *, batch_size: int, num_local_devices: int,
                  substeps: int, seed: int, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> Iterator[np.ndarray]:
    """Endless shuffled training batches, laid out as google-research/vdm expects.

    One yield holds `substeps` consecutive optimiser steps. Global step k takes
    positions [k*B, (k+1)*B) of the shuffled sequence (see the module docstring);
    this host keeps positions [p*B/P, (p+1)*B/P) of each, split evenly over its
    devices.

    Args:
      images: uint8 [N, H, W, C], the whole training set.
      batch_size: global batch size B (all hosts, all devices).
      num_local_devices: devices of this host, L.
      substeps: optimiser steps per yield, S.
      seed: shuffling seed (the same on every host).
      start_step: first optimiser step to yield; resumes an interrupted run exactly.
      process_index: this host's index p.
      process_count: number of hosts P.

    Returns:
      An endless iterator; its j-th item is uint8 [L, S, B // (P * L), H, W, C], the
      batches of steps start_step + j*S, ..., start_step + j*S + S - 1.

    Raises:
      ValueError: at the call, for an invalid argument (e.g. B not divisible by P * L).
    """
    _check_train_args(images, substeps=substeps, seed=seed, start_step=start_step,
                      process_index=process_index, process_count=process_count)
    per_device = check_batch_size(batch_size, process_count * num_local_devices, "batch_size")
    per_host = per_device * num_local_devices
    order = _EpochOrder(images.shape[0], seed)
    # Offsets, inside one yield's [S * B) positions, of this host's examples: [S, B/P],
    # then laid out as [L, S, B/(P*L)] so that a single gather builds the batch.
    host_offsets = (np.arange(substeps, dtype=np.int64)[:, None] * batch_size
                    + process_index * per_host + np.arange(per_host, dtype=np.int64))
    host_offsets = host_offsets.reshape(substeps, num_local_devices, per_device).swapaxes(0, 1)
    return _gather_forever(images, order, np.ascontiguousarray(host_offsets),
                           first_position=start_step * batch_size,
                           positions_per_yield=substeps * batch_size)


def _gather_forever(images: np.ndarray, order: _EpochOrder, host_offsets: np.ndarray, *,
                    first_position: int, positions_per_yield: int) -> Iterator[np.ndarray]:
    """Yields images[order(position + host_offsets)], position advancing each yield."""
    position = first_position
    while True:
        yield images[order.indices(position + host_offsets)]
        position += positions_per_yield


def eval_batches(images: np.ndarray, labels: Optional[np.ndarray] = None, *,
                 batch_size: int) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """One in-order pass over a split; the last batch may be smaller.

    Args:
      images: [N, H, W, C].
      labels: [N] or None.
      batch_size: examples per batch.

    Returns:
      An iterator of (images [b, H, W, C], labels [b] or None), b = batch_size except
      at the end.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid: expected a positive int.")
    if labels is not None and labels.shape[:1] != images.shape[:1]:
        raise ValueError(f"labels has shape {labels.shape}: expected [N] = {images.shape[:1]}.")
    return ((images[start:start + batch_size],
             None if labels is None else labels[start:start + batch_size])
            for start in range(0, images.shape[0], batch_size))
