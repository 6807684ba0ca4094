"""Files written whole or not at all: a temporary file beside the target, then a rename."""

import contextlib
import json
import os
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def replacing(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path` (ending in `suffix`, for writers that read the
    format from it); once the block ends without error, renames it onto `path`. A reader sees
    the old file or the new one, never half of one; on error the temporary file is removed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.partial-{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str, data: bytes):
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str, text: str):
    write_bytes(path, text.encode())


def write_json(path: str, payload, indent: int = 2, **kwargs):
    write_text(path, json.dumps(payload, indent=indent, **kwargs))


def save_npz(path: str, compressed: bool = False, **arrays):
    """np.savez (or np.savez_compressed) of the named arrays to exactly `path`."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def save_npy(path: str, array: np.ndarray):
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
