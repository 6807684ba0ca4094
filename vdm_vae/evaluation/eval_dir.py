"""workdir/eval/ replaced as a whole: an evaluation writes a folder beside it, then renames it.

  with eval_dir.replacing(workdir, step, before_commit=interrupts.hold) as out_dir:
      ...write metrics.json, bound_per_image.npz, figures into out_dir...

Until the rename, eval/ is the previous evaluation, untouched: an evaluation that fails or is
stopped leaves it as it was. The files of eval/ that `--mode=eval` does not write itself (those of
fit_prior, w_prior*.json/npz and samples_learned_prior.png, and sample_fid's fid_<prior>_T<steps>/
folders) are carried into the new eval/ when they come from the step evaluated (or record no
step), and moved to workdir/eval_earlier/step_<N>/ when they come from another step N: eval/
only ever holds one step's files. Carried files are hard links (copies where links fail), so
the old eval/ stays whole until the rename.

Every file records its step: "step" in JSON files and .npz archives, a "step" text chunk in
PNGs, and "checkpoint_step" in a fid folder's plan.json.
"""

import contextlib
import json
import os
import shutil
from typing import Callable, Iterator, Optional

import numpy as np

from vdm_vae.runtime.images import png_step, stamp_png

EVAL_DIR = "eval"
EARLIER_DIR = "eval_earlier"
_PREVIOUS = "eval.previous"  # the old eval/ between the two renames
_PARTIAL = "eval.partial-"  # + pid: an evaluation being written
# What `--mode=eval` writes: replaced by each evaluation, never carried over.
EVALUATION_FILES = ("metrics.json", "bound_per_image.npz", "samples.npz", "samples.png",
                    "guided.png", "reconstruction.png", "tsne.png", "pca.png", "w_usage.png",
                    "kl_per_dim.png", "interpolation.png")


def recover(workdir: str):
    """Finishes or undoes what a killed evaluation left (call it holding the workdir's lock):
    eval/ put back if it was killed between the two renames, partial folders removed."""
    eval_dir, previous = os.path.join(workdir, EVAL_DIR), os.path.join(workdir, _PREVIOUS)
    if os.path.isdir(previous):
        if os.path.isdir(eval_dir):
            shutil.rmtree(previous)  # killed after the new eval/ was in place
        else:
            os.rename(previous, eval_dir)  # killed between the renames: the old one returns
    for name in os.listdir(workdir) if os.path.isdir(workdir) else []:
        if name.startswith(_PARTIAL):
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


@contextlib.contextmanager
def replacing(workdir: str, step: int,
              before_commit: Optional[Callable[[], None]] = None) -> Iterator[str]:
    """Yields a new folder for the evaluation of `step`; once the block ends without error,
    stamps its PNGs with the step, carries over the other commands' files (see the module
    docstring) and renames it to workdir/eval. On error (or a signal) it is removed and eval/
    stays as it was.

    Args:
      before_commit: called once the evaluation is whole, before anything is renamed (e.g. to
        stop signals from interrupting the commit).
    """
    recover(workdir)
    out_dir = os.path.join(workdir, f"{_PARTIAL}{os.getpid()}")
    os.makedirs(out_dir)
    try:
        yield out_dir
        if before_commit is not None:
            before_commit()
        for name in os.listdir(out_dir):
            if name.endswith(".png"):
                stamp_png(os.path.join(out_dir, name), step)
        _carry_over(workdir, out_dir, step)
        _swap(workdir, out_dir)
    finally:
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir, ignore_errors=True)


def recorded_step(path: str) -> Optional[int]:
    """The step a file (or fid folder) of eval/ records, None if it records none."""
    try:
        if os.path.isdir(path):
            plan = os.path.join(path, "plan.json")
            return _json_step(plan, "checkpoint_step") if os.path.exists(plan) else None
        if path.endswith(".json"):
            return _json_step(path, "step")
        if path.endswith(".npz"):
            with np.load(path) as f:
                return int(f["step"]) if "step" in f.files else None
        if path.endswith(".png"):
            return png_step(path)
    except (OSError, ValueError, KeyError):
        return None
    return None


def _json_step(path: str, key: str) -> Optional[int]:
    with open(path) as f:
        payload = json.load(f)
    value = payload.get(key) if isinstance(payload, dict) else None
    return int(value) if value is not None else None


def _carry_over(workdir: str, out_dir: str, step: int):
    """Links the files of eval/ that this evaluation does not write into out_dir (same step or
    none recorded) or into eval_earlier/step_<N>/ (another step N)."""
    eval_dir = os.path.join(workdir, EVAL_DIR)
    if not os.path.isdir(eval_dir):
        return
    for name in sorted(os.listdir(eval_dir)):
        if name in EVALUATION_FILES or os.path.exists(os.path.join(out_dir, name)):
            continue
        source = os.path.join(eval_dir, name)
        other = recorded_step(source)
        if other is None or other == step:
            _link(source, os.path.join(out_dir, name))
        else:
            target = os.path.join(workdir, EARLIER_DIR, f"step_{other}", name)
            if os.path.lexists(target):
                shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
            _link(source, target)


def _link(source: str, target: str):
    """Hard-links `source` (a file or a folder tree) at `target`, copying where links fail."""
    os.makedirs(os.path.dirname(target), exist_ok=True)

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if os.path.isdir(source):
        shutil.copytree(source, target, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)


def _swap(workdir: str, out_dir: str):
    """eval/ -> eval.previous/, out_dir -> eval/, then eval.previous/ removed (`recover`
    finishes this after a kill)."""
    eval_dir, previous = os.path.join(workdir, EVAL_DIR), os.path.join(workdir, _PREVIOUS)
    if os.path.isdir(eval_dir):
        os.rename(eval_dir, previous)
    os.rename(out_dir, eval_dir)
    shutil.rmtree(previous, ignore_errors=True)
