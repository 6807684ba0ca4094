"""Does a config (and its data) describe the run of a workdir? Checked before an evaluation.

The run's config.json holds the config it was trained with and a fingerprint of its data
(`vdm_vae.training.checkpoints.data_fingerprint`); an evaluation given another config file, or
another data file of the same shape, would otherwise evaluate silently and record the other
config's name.
"""

import json
import os
from typing import List

import flax
import ml_collections

from vdm_vae.data import Dataset
from vdm_vae.training.checkpoints import CONFIG_FILE, data_fingerprint, read_run_config

# Fields that say how a run is driven, logged or evaluated, not what it is: they may differ.
FREE_FIELDS = ("training.tensorboard", "training.stop_at_step", "training.steps_per_logging",
               "training.steps_per_eval", "training.steps_per_save", "training.substeps",
               "training.checkpoints_to_keep", "training.checkpoints_keep_period",
               "training.batch_size_eval", "training.num_eval_batches",
               "training.eval_num_samples", "training.eval_sample_steps",
               "training.curve_probe_train", "training.curve_probe_test",
               "training.prefetch_batches", "training.async_checkpoints")


def _flat(tree: dict) -> dict:
    """{"a.b": value} with tuples as lists (as config.json holds them)."""
    flat = flax.traverse_util.flatten_dict(tree, sep=".")
    return {k: json.loads(json.dumps(v, default=list)) for k, v in flat.items()}


def differences(workdir: str, config: ml_collections.ConfigDict, dataset: Dataset) -> List[str]:
    """The fields of `config` (eval.* and FREE_FIELDS aside) that differ from the run's
    config.json, as "field (run X, given Y)", and "data ..." if the data's fingerprint differs.
    Fields the run's file lacks (added to the config since) are not compared."""
    payload = read_run_config(workdir)
    saved, given = _flat(payload["config"]), _flat(config.to_dict())
    found = [f"{key} (run {saved[key]!r}, given {given.get(key)!r})"
             for key in sorted(saved, key=lambda k: (k != "name", k))
             if not key.startswith("eval.") and key not in FREE_FIELDS
             and saved[key] != given.get(key)]
    if "data" in payload and payload["data"] != data_fingerprint(dataset):
        run, now = payload["data"], data_fingerprint(dataset)
        found.append(f"data (run {run.get('name')!r} train {run.get('train_images')} test "
                     f"{run.get('test_images')} hash {str(run.get('hash'))[:8]}, given "
                     f"{now['name']!r} train {now['train_images']} test {now['test_images']} "
                     f"hash {now['hash'][:8]})")
    return found


def check(workdir: str, config: ml_collections.ConfigDict, dataset: Dataset,
          allow_change: bool) -> List[str]:
    """`differences`; a ValueError naming them unless `allow_change` (then they are returned,
    for the evaluation to record)."""
    found = differences(workdir, config, dataset)
    if found and not allow_change:
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise ValueError(f"the config or data given differ from the run's "
                         f"{os.path.join(workdir, CONFIG_FILE)}: {shown}. Evaluate with the "
                         "config the run was trained with, or pass --allow_config_change to "
                         "evaluate anyway.")
    return found
