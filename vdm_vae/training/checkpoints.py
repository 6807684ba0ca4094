"""Orbax checkpoints under workdir/checkpoints, the run config beside them, and `load`.

A step that cannot be read (truncated or missing files) is moved to
workdir/checkpoints_unreadable/ with a one-line warning, and the newest readable step is used.
A step that cannot be written (a full disk) raises `SaveFailed`, in one line, after removing
what Orbax left of it.
"""

import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Callable, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from vdm_vae.model.config import ModelConfig, model_config_from_dict, model_config_to_dict
from vdm_vae.runtime import atomic
from vdm_vae.runtime.console import warn

CONFIG_FILE = "config.json"
UNREADABLE_DIR = "checkpoints_unreadable"
_REMOVE_TRIES = 25  # x 0.2 s: how long a failed save's folder is removed again if it returns


def data_fingerprint(dataset) -> dict:
    """What identifies a run's data: its name, the shapes of its splits and a hash of their
    pixels (so that another file of the same shape is told apart)."""
    digest = hashlib.blake2b(digest_size=16)
    for images in (dataset.train_images, dataset.test_images):
        digest.update(str(images.shape).encode())
        digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return {"name": dataset.name, "train_images": list(dataset.train_images.shape),
            "test_images": list(dataset.test_images.shape), "hash": digest.hexdigest()}


def save_run_config(workdir: str, config_dict: dict, model_config: ModelConfig,
                    data: Optional[dict] = None):
    """Writes workdir/config.json: the whole run config, the resolved model config and the
    data's `data_fingerprint`."""
    os.makedirs(workdir, exist_ok=True)
    payload = {"config": config_dict, "model": model_config_to_dict(model_config)}
    if data is not None:
        payload["data"] = data
    atomic.write_json(os.path.join(workdir, CONFIG_FILE), payload, default=list)


def read_run_config(workdir: str) -> dict:
    """workdir/config.json as written by `save_run_config` ({"config", "model"[, "data"]}).

    Raises:
      FileNotFoundError: no config.json.
      ValueError: naming the file, when it is not JSON (e.g. truncated) or not such an object.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {workdir!r} a vdm_vae workdir?")
    fix = "restore it from a copy, or train in a new workdir"
    try:
        with open(path, "rb") as f:
            payload = json.loads(f.read().decode())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON (truncated or damaged: "
                         f"{' '.join(str(error).split())}): {fix}.") from error
    if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k), dict) and payload.get(k) for k in ("config", "model")):
        found = (f"an object with keys {sorted(payload)}" if isinstance(payload, dict)
                 else f"a JSON {type(payload).__name__}")
        raise ValueError(f"{path} holds {found}: expected the run's config as main.py writes it "
                         f"({{\"config\": {{...}}, \"model\": {{...}}}}); {fix}.")
    return payload


def load_run_config(workdir: str) -> Tuple[dict, ModelConfig]:
    """(run config as a dict, ModelConfig) saved by `save_run_config`; errors as
    `read_run_config`."""
    payload = read_run_config(workdir)
    try:
        model_config = model_config_from_dict(payload["model"])
    except (TypeError, KeyError) as error:
        raise ValueError(f"{os.path.join(workdir, CONFIG_FILE)} has a model config that does "
                         f"not load ({type(error).__name__}: {error}): restore the file from a "
                         "copy, or train in a new workdir.") from error
    return payload["config"], model_config


class SaveFailed(ValueError):
    """A checkpoint could not be written (a full disk, permissions): a user error, one line."""


class Checkpointer:
    """Periodic, atomic (Orbax writes to a temporary folder, then renames), keep-N, and
    optionally in the background (`save(..., wait=False)`).

    With keep_period > 0, the steps that are multiples of it are kept as well as the newest
    max_to_keep, so that runs can be evaluated and compared at those steps later.
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, keep_period: int = 0):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotADirectoryError(
                f"{self.directory} is a file: expected the folder of the run's checkpoints; "
                "move the file away (or use a new workdir).")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               keep_period=keep_period or None)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.restored_step: Optional[int] = None
        self._pending: Optional[int] = None  # a step being written in the background

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def all_steps(self) -> list:
        """Every saved step, ascending."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, wait: bool = True):
        """Saves a host copy of `state` (unreplicated) at `step`. With wait=False it returns once
        the copy is made and the files are written in the background (Orbax's thread); the
        next `save`, `wait` or `close` waits for them. Either way the step appears only whole
        (written to a temporary folder, then renamed).

        Raises:
          SaveFailed: in one line (the cause and the newest step kept), once the step's
            temporary folder is removed; whatever failed, in this thread or Orbax's. A
            background save that failed raises at the next `save`, `wait` or `close`.
        """
        self.wait()
        _ignore_closed_loop_callbacks()  # a failed save's late writes print nothing
        self._pending = step
        try:
            self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)),
                              force=True)
        except Exception as error:  # noqa: BLE001 - any failure to write ends the run
            self._failed(error)
        if wait:
            self.wait()

    def wait(self):
        """Waits for a background save; raises its failure as `SaveFailed` (see `save`)."""
        if self._pending is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as error:  # noqa: BLE001 - any failure to write ends the run
            self._failed(error)
        self._pending = None

    def wait_quietly(self):
        """`wait`, with a failure only warned about: for a run that is ending on another
        error, which stays the one reported."""
        try:
            self.wait()
        except SaveFailed as error:
            warn(str(error))

    def _failed(self, error: Exception):
        step, self._pending = self._pending, None
        self._remove_partial(step)
        kept = [s for s in _step_folders(self.directory) if s != step]
        newest = (f"the newest checkpoint is step {max(kept)}" if kept
                  else "no checkpoint was saved before it")
        raise SaveFailed(f"could not save step {step} in {self.directory} "
                         f"({_reason(error)}); {newest}.") from error

    def _remove_partial(self, step: int):
        """Removes what a failed save of `step` left (Orbax's temporary folder), until it stays
        gone: Orbax's other threads may still be writing into it for a moment."""
        if jax.process_index() != 0:
            return
        pattern = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")
        for _ in range(_REMOVE_TRIES):
            for path in glob.glob(pattern):
                shutil.rmtree(path, ignore_errors=True)
            time.sleep(0.2)
            if not glob.glob(pattern):
                return

    def restore(self, template):
        """The newest readable state, shaped like `template`; see `_restore_newest`."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        return self._restore_newest(
            lambda step: self.manager.restore(step, args=ocp.args.StandardRestore(abstract)))

    def restore_raw(self, step: Optional[int] = None) -> dict:
        """The state at `step` (None: the newest readable) as nested dicts of arrays."""
        if step is None:
            return self._restore_newest(self._restore_raw_step)
        if step not in self.all_steps():
            raise ValueError(f"step={step} has no checkpoint in {self.directory}: saved steps "
                             f"are {self.all_steps()}.")
        state = self._restore_raw_step(step)
        self.restored_step = step
        return state

    def _restore_raw_step(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.StandardRestore())

    def _restore_newest(self, restore_step: Callable[[int], object]):
        """Restores the newest step that can be read; moves unreadable ones aside.

        A step is unreadable when even a restore without a template fails; a step that reads
        but does not fit `restore_step` (e.g. another model) raises that error instead.

        Raises:
          FileNotFoundError: no step at all, or none readable (naming where they went).
        """
        moved = []
        _ignore_closed_loop_callbacks()  # a failed read's late callbacks print nothing
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state = restore_step(step)
            except Exception as error:  # noqa: BLE001 - any failure to read means unreadable
                if self._readable(step):
                    raise
                moved.append(self._move_aside(step, error))
                continue
            self.restored_step = step
            return state
        if moved:
            raise FileNotFoundError(
                f"no readable checkpoint in {self.directory}: moved {', '.join(moved)} aside; "
                "put a good copy back there, or run again to start from step 0.")
        raise FileNotFoundError(f"no checkpoint in {self.directory}.")

    def _readable(self, step: int) -> bool:
        _ignore_closed_loop_callbacks()
        try:
            self._restore_raw_step(step)
        except Exception:  # noqa: BLE001 - reading failed, whatever the cause
            return False
        return True

    def _move_aside(self, step: int, error: Exception) -> str:
        """Moves step's folder to workdir/checkpoints_unreadable/ (never deletes); its path."""
        source = os.path.join(self.directory, str(step))
        aside = os.path.join(os.path.dirname(self.directory), UNREADABLE_DIR)
        target = os.path.join(aside, str(step))
        suffix = 1
        while os.path.exists(target):
            target, suffix = os.path.join(aside, f"{step}.{suffix}"), suffix + 1
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        if jax.process_index() == 0:
            os.makedirs(aside, exist_ok=True)
            shutil.move(source, target)
        _sync(f"vdm_vae_move_aside_{step}")
        self.manager.reload()
        warn(f"checkpoint {source} is unreadable ({type(error).__name__}: {reason}); "
             f"moved it to {target} and trying the previous step.")
        return target

    def close(self):
        """Waits for a background save (its failure raises `SaveFailed`), then closes."""
        try:
            self.wait()
        finally:
            self.manager.close()


def _ignore_closed_loop_callbacks():
    """Drops "Event loop is closed" errors that a failed restore or save leaves behind.

    TensorStore completes the reads of a failed restore (and the writes of a failed save) after
    Orbax closed their event loop; each completion raises in a callback, and Python prints
    hundreds of these tracebacks, through sys.unraisablehook or sys.excepthook.
    """
    if getattr(sys.unraisablehook, "drops_closed_loop", False):
        return
    previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

    def closed_loop(error) -> bool:
        return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)

    def unraisable_hook(unraisable):
        if not closed_loop(unraisable.exc_value):
            previous_unraisable(unraisable)

    def except_hook(kind, value, traceback):
        if not closed_loop(value):
            previous_except(kind, value, traceback)

    unraisable_hook.drops_closed_loop = True
    sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook


def _step_folders(directory: str) -> list:
    """The steps whose folders are complete in `directory` (no Orbax temporary folders)."""
    try:
        return [int(n) for n in os.listdir(directory) if n.isdigit()]
    except OSError:
        return []


_DISK_FULL = "No space left on device: free space there, then run again to resume"


def _reason(error: BaseException) -> str:
    """Why a save failed, in a few words: a full disk (an OS error, or TensorStore's words for
    it), the first other OS error in `error`'s chain as `strerror: file`, else its first line."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return _DISK_FULL
        if isinstance(seen, OSError) and seen.strerror:
            return f"{seen.strerror}: {seen.filename}" if seen.filename else seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = next((line for line in str(error).splitlines() if line.strip()), "")
    if "No space left" in text or "RESOURCE_EXHAUSTED" in text:
        return _DISK_FULL
    return f"{type(error).__name__}: {text}"[:300]


def _sync(name: str):
    """Waits for every process (no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def load(workdir: str, step: Optional[int] = None) -> Tuple[dict, ModelConfig]:
    """(EMA params, ModelConfig) of the checkpoint at `step` (None: newest readable)."""
    params, model_config, _ = load_with_step(workdir, step)
    return params, model_config


def open_saved(workdir: str) -> Checkpointer:
    """The Checkpointer of a workdir that has saved checkpoints; unlike `Checkpointer`, it
    creates nothing, so a workdir without checkpoints/ stays as it was."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(
            f"{workdir} has no checkpoints/ folder, so nothing to load: a run restored from its "
            "record keeps its results, not its checkpoints (train it with main.py first).")
    return Checkpointer(workdir)


def load_with_step(workdir: str, step: Optional[int] = None) -> Tuple[dict, ModelConfig, int]:
    """(EMA params, ModelConfig, step) of the checkpoint at `step` (None: newest readable)."""
    _, model_config = load_run_config(workdir)
    ckpt = open_saved(workdir)
    try:
        raw = ckpt.restore_raw(step)
    finally:
        ckpt.close()
    params = jax.tree_util.tree_map(np.asarray, raw["ema_params"])
    return params, model_config, ckpt.restored_step
