"""Orbax checkpoints under workdir/checkpoints, the run config beside them, and `load`."""

import json
import os
from typing import Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from vdm_vae.model_config import ModelConfig, model_config_from_dict, model_config_to_dict

CONFIG_FILE = "config.json"


def _write_atomic(path: str, text: str):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_run_config(workdir: str, config_dict: dict, model_config: ModelConfig):
    """Writes workdir/config.json: the whole run config and the resolved model config."""
    os.makedirs(workdir, exist_ok=True)
    payload = {"config": config_dict, "model": model_config_to_dict(model_config)}
    _write_atomic(os.path.join(workdir, CONFIG_FILE), json.dumps(payload, indent=2, default=list))


def load_run_config(workdir: str) -> Tuple[dict, ModelConfig]:
    """(run config as a dict, ModelConfig) saved by `save_run_config`."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {workdir!r} a vdm_vae workdir?")
    with open(path) as f:
        payload = json.load(f)
    return payload["config"], model_config_from_dict(payload["model"])


class Checkpointer:
    """Periodic, atomic (Orbax writes to a temporary folder, then renames) and keep-N."""

    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state) -> bool:
        """Saves a host copy of `state` (unreplicated) at `step`; waits until it is on disk."""
        saved = self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)),
                                  force=True)
        self.manager.wait_until_finished()
        return saved

    def restore(self, template, step: Optional[int] = None):
        """The state at `step` (default: latest), shaped like `template`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_raw(self, step: Optional[int] = None) -> dict:
        """The latest state as nested dicts of arrays, without a template."""
        step = self.latest_step() if step is None else step
        return self.manager.restore(step, args=ocp.args.StandardRestore())

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def load(workdir: str, step: Optional[int] = None) -> Tuple[dict, ModelConfig]:
    """(EMA params, ModelConfig) of the latest (or given) checkpoint in `workdir`."""
    _, model_config = load_run_config(workdir)
    ckpt = Checkpointer(workdir)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt.directory}.")
        raw = ckpt.restore_raw(step)
    finally:
        ckpt.close()
    params = jax.tree_util.tree_map(np.asarray, raw["ema_params"])
    return params, model_config
