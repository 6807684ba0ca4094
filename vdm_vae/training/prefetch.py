"""Training batches placed on the devices ahead of the step that takes them.

jax dispatches a train step and returns at once; a batch handed to the step as a host array is
copied to the devices inside that call. Placing the next `size` batches ahead (each
`device_put` returns at once and copies in the background) takes the copy out of the step's
way. The batches and their order are unchanged.
"""

import collections
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vdm_vae.training.step import AXIS


def place_on_devices(batch: np.ndarray, devices: int):
    """batch [devices, ...] split over the first `devices` local devices along AXIS, laid out
    as the pmapped step's inputs (`step.replicate`); in a multi-process run the host array."""
    if jax.process_count() > 1:
        return batch
    mesh = Mesh(np.array(jax.local_devices()[:devices]), (AXIS,))
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(AXIS)))


def prefetch_to_devices(batches: Iterator[np.ndarray], devices: int,
                        size: int) -> Iterator[np.ndarray]:
    """Yields the items of `batches` in order, each placed on the devices `size` items before
    it is yielded (size 0: the host arrays, as they come)."""
    if size <= 0:
        yield from batches
        return
    queue = collections.deque()
    for batch in batches:
        queue.append(place_on_devices(batch, devices))
        if len(queue) > size:
            yield queue.popleft()
    yield from queue
