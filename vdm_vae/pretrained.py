"""Trained weights shipped inside the package, loaded by name: `vdm_vae.load("mnist")`.

A file vdm_vae/weights/<name>.npz holds one run's EMA parameters in float16 (half the size of
float32), its ModelConfig, the prior over w fitted after training where the run has one, a few
test images for the demo, and where it all came from (run, step, command, published bound).

  python -m vdm_vae.pretrained --workdir=RUN --name=mnist --source="how the run was made"
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

import numpy as np

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PARAMS, PRIOR = "params/", "fitted_prior/"
NUM_IMAGES = 16  # test images kept for the demo


def available() -> list:
    """Names of the shipped weights."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(f[:-4] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".npz"))


def path_of(name: str) -> str:
    """vdm_vae/weights/<name>.npz; a one-line ValueError naming the shipped names otherwise."""
    path = os.path.join(WEIGHTS_DIR, f"{name}.npz")
    if not os.path.exists(path):
        raise ValueError(f"no shipped weights named {name!r}: expected one of {available()} "
                         "(or a run's workdir).")
    return path


def _flatten(tree, prefix: str) -> dict:
    from flax import traverse_util

    return {prefix + "/".join(k): np.asarray(v, np.float16)
            for k, v in traverse_util.flatten_dict(tree).items()}


def _unflatten(arrays, prefix: str) -> dict:
    from flax import traverse_util

    flat = {tuple(k[len(prefix):].split("/")): np.asarray(arrays[k], np.float32)
            for k in arrays.files if k.startswith(prefix)}
    return traverse_util.unflatten_dict(flat)


def export(workdir: str, path: str, source: str, step: Optional[int] = None) -> dict:
    """Writes a run's EMA parameters (float16), configs, fitted prior and a few test images
    to `path` (an .npz, written whole). Returns the metadata stored with them."""
    from vdm_vae.data import load_dataset
    from vdm_vae.evaluation import fitted_prior
    from vdm_vae.model.config import model_config_to_dict
    from vdm_vae.runtime import atomic
    from vdm_vae.training.checkpoints import load_run_config, load_with_step

    params, model_config, loaded_step = load_with_step(workdir, step)
    run_config, _ = load_run_config(workdir)
    arrays = _flatten(params, PARAMS)
    meta = {"run": os.path.basename(os.path.normpath(workdir)), "step": loaded_step,
            "source": source, "model": model_config_to_dict(model_config),
            "config_name": run_config.get("name")}
    eval_path = os.path.join(workdir, "eval", "metrics.json")
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            metrics = json.load(f)
        meta["eval"] = {k: metrics.get(k) for k in ("step", "bpd", "bpd_stderr")}
    if os.path.isdir(os.path.join(workdir, "w_prior")):
        prior_params, prior_config = fitted_prior.load_fitted_prior(workdir)
        arrays.update(_flatten(prior_params, PRIOR))
        meta["fitted_prior"] = dataclasses.asdict(prior_config)
    dataset = load_dataset(run_config["data"])
    arrays["test_images"] = np.asarray(dataset.test_images[:NUM_IMAGES], np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    atomic.save_npz(path, compressed=True, **arrays)
    return meta


def _open(name: str):
    return np.load(path_of(name))


def info(name: str) -> dict:
    """The metadata of shipped weights: run, step, source command, published bound."""
    with _open(name) as arrays:
        return json.loads(arrays["meta"].tobytes().decode())


def load_pretrained(name: str) -> Tuple[dict, object]:
    """(EMA params as float32, ModelConfig) of the shipped weights `name`."""
    from vdm_vae.model.config import model_config_from_dict

    with _open(name) as arrays:
        meta = json.loads(arrays["meta"].tobytes().decode())
        params = _unflatten(arrays, PARAMS)
    return params, model_config_from_dict(meta["model"])


def load_pretrained_prior(name: str):
    """(params, PriorConfig) of the prior fitted after training, or None if none was shipped."""
    from vdm_vae.evaluation.fitted_prior import PriorConfig

    with _open(name) as arrays:
        meta = json.loads(arrays["meta"].tobytes().decode())
        if "fitted_prior" not in meta:
            return None
        return _unflatten(arrays, PRIOR), PriorConfig(**meta["fitted_prior"])


def test_images(name: str) -> np.ndarray:
    """The first test images of the run's data set, uint8 [N, H, W, C], kept with the weights."""
    with _open(name) as arrays:
        return np.asarray(arrays["test_images"])


def load(name_or_workdir: str, step: Optional[int] = None) -> Tuple[dict, object]:
    """(EMA params, ModelConfig) of a run's workdir, or of shipped weights by name when no such
    folder exists (`vdm_vae.load`)."""
    if not os.path.isdir(name_or_workdir) and name_or_workdir in available():
        if step is not None:
            raise ValueError(f"step={step}: shipped weights {name_or_workdir!r} have one step, "
                             f"{info(name_or_workdir)['step']}; expected step=None.")
        return load_pretrained(name_or_workdir)
    from vdm_vae.training.checkpoints import load as load_run

    return load_run(name_or_workdir, step)


def load_fitted_prior(name_or_workdir: str):
    """(params, PriorConfig) of the prior fitted after training, from a workdir or shipped
    weights by name (`vdm_vae.load_fitted_prior`)."""
    if not os.path.isdir(name_or_workdir) and name_or_workdir in available():
        prior = load_pretrained_prior(name_or_workdir)
        if prior is None:
            raise ValueError(f"shipped weights {name_or_workdir!r} have no fitted prior.")
        return prior
    from vdm_vae.evaluation import fitted_prior

    return fitted_prior.load_fitted_prior(name_or_workdir)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a trained run")
    parser.add_argument("--name", required=True, help="writes vdm_vae/weights/<name>.npz")
    parser.add_argument("--source", required=True, help="the commands that made the run")
    parser.add_argument("--step", type=int, default=None, help="a kept step (default: newest)")
    args = parser.parse_args(argv)
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    path = os.path.join(WEIGHTS_DIR, f"{args.name}.npz")
    meta = export(args.workdir, path, args.source, args.step)
    print(f"{path}: {os.path.getsize(path) / 2**20:.1f} MiB, run {meta['run']} at step "
          f"{meta['step']}")


if __name__ == "__main__":
    main()
