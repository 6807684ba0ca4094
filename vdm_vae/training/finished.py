"""workdir/finished.json: a run is finished once its last step is saved and evaluated.

  {"step": N, "evaluation": {"step": N, "eval/bpd": ..., ...}}   # the scalars of metrics.jsonl

Written only after that evaluation succeeded; removed as soon as the run trains on past it. A
checkpoint past the config's steps is refused, never silently marked finished.
"""

import json
import os
from typing import Optional

import jax
import ml_collections

from vdm_vae.runtime import atomic
from vdm_vae.runtime.console import say

FINISHED_FILE = "finished.json"


def read(workdir: str) -> Optional[dict]:
    """workdir/finished.json ({"step", "evaluation"}), or None (also for an unreadable one)."""
    try:
        with open(os.path.join(workdir, FINISHED_FILE)) as f:
            payload = json.load(f)
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def finished_step(workdir: str) -> Optional[int]:
    """The step of a run finished and evaluated in `workdir` (finished.json naming its
    evaluation), else None."""
    finished = read(workdir)
    if finished is None or "evaluation" not in finished:
        return None
    return finished.get("step")


def mark(workdir: str, step: int, evaluation: dict):
    """Writes finished.json (process 0): the step and its evaluation's scalars."""
    if jax.process_index() == 0:
        atomic.write_json(os.path.join(workdir, FINISHED_FILE),
                          {"step": int(step), "evaluation": {"step": int(step), **evaluation}})


def unmark(workdir: str, step: int, last_step: int):
    """Removes (process 0) a finished.json that no longer holds: the run trains on from `step`
    to `last_step`, or it names another step, or no evaluation."""
    path = os.path.join(workdir, FINISHED_FILE)
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    finished = read(workdir) or {}
    if step < last_step or finished.get("step") != step or "evaluation" not in finished:
        os.remove(path)
        say(f"Removed {path} (step {finished.get('step')}): the run goes on from step {step}.")


def end_step(t: ml_collections.ConfigDict, step: int, finish_at_checkpoint: bool,
             directory: str) -> int:
    """The step a call of train() ends at, restored at `step`: training.stop_at_step, else
    num_steps_train, or `step` itself when it is past them and `finish_at_checkpoint`.

    Raises:
      ValueError: the restored step is past the config's steps (refused, never ignored).
    """
    if step > t.num_steps_train:
        if finish_at_checkpoint:
            return step
        raise ValueError(f"the newest checkpoint in {directory} is step {step}, past "
                         f"config.training.num_steps_train={t.num_steps_train}: train to at least "
                         f"{step} steps, or pass --finish_at_checkpoint to finish the run at step "
                         f"{step}.")
    if t.stop_at_step and step > t.stop_at_step:
        raise ValueError(f"the newest checkpoint in {directory} is step {step}, past "
                         f"config.training.stop_at_step={t.stop_at_step}: use a later "
                         "stop_at_step, or 0 to train to num_steps_train.")
    return t.stop_at_step or t.num_steps_train
