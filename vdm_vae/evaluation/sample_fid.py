"""Samples a trained run in resumable chunks and scores their FID against the test images.

  python -m vdm_vae.evaluation.sample_fid --workdir=runs/mnist_cpu --prior=standard \
      --num_samples=5000 --steps=100

--prior: `standard` draws w from the model's own prior, N(0, I) unless the run learned one with
the model (`model.w_prior_components`, `model.w_prior_vdm`), and is the only choice for a run
without an encoder; `learned` from the prior that `python -m vdm_vae.evaluation.fit_prior` saved.
Chunk i of --batch images always uses the key fold_in(PRNGKey(--seed), i), so the samples are
the same however the work is split or interrupted. Each chunk is written atomically to
workdir/eval/fid_<prior>_T<steps>/chunk_<i>.npz; a restarted command samples only the missing
ones. The same command may run in several processes at once (e.g. one per core, under
`taskset`): each claims a chunk with a lock file before sampling it, then, the same way, before
passing it through the Inception network (features_<i>.npy), and the process that finds every
chunk's features done writes samples.npz, features.npy (all the features), fid.json and
samples.png (the first 100). fid.json holds the FID of all the samples against the whole test set
with the number of samples, T and the checkpoint's step, and the FIDs of SPLITS disjoint blocks
of the samples, from which `experiments/collect.py` gives two runs' FID difference an interval.
The workers share the workdir's lock (`hold_workdir(shared=True)`): they run together, but never
beside a training, an evaluation or fit_prior of the same run.
"""

import json
import os
import time
from typing import List, Optional

import jax
import numpy as np
from absl import app, flags

from vdm_vae import data as data_lib
from vdm_vae.evaluation import fitted_prior
from vdm_vae.evaluation.evaluate import fid_cache_dir
from vdm_vae.metrics import fid
from vdm_vae.runtime import atomic, cli
from vdm_vae.runtime.images import image_grid, save_png
from vdm_vae.runtime.locks import claim, hold_workdir, release
from vdm_vae.runtime.progress import Progress
from vdm_vae.sampling import sample
from vdm_vae.training.checkpoints import load_run_config, load_with_step

PRIORS = ("standard", "learned")
SPLITS = 5  # disjoint blocks whose FIDs give two runs' FID difference an interval
PLAN_FILE = "plan.json"


def define_flags():
    """Defines the command's flags (only when run as a command: the module imports anywhere)."""
    flags.DEFINE_string("workdir", None, "The trained run's workdir.")
    flags.DEFINE_enum("prior", "standard", PRIORS, "Where w comes from.")
    flags.DEFINE_integer("num_samples", 5000, "Samples to draw and score.")
    flags.DEFINE_integer("steps", 250, "T, the reverse steps of the sampler.")
    flags.DEFINE_integer("batch", 250, "Images per chunk (one sampler call).")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.mark_flags_as_required(["workdir"])


def chunk_sizes(num: int, batch: int) -> List[int]:
    """Sizes of the chunks that make `num` samples in chunks of at most `batch`."""
    return [min(batch, num - start) for start in range(0, num, batch)]


def out_dir(workdir: str, prior: str, steps: int) -> str:
    return os.path.join(workdir, "eval", f"fid_{prior}_T{steps}")


def _chunk_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"chunk_{index:05d}.npz")


def _features_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"features_{index:05d}.npy")


def check_plan(directory: str, plan: dict):
    """Writes plan.json, or checks that the folder's chunks were made with the same plan."""
    path = os.path.join(directory, PLAN_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        for key, value in plan.items():
            if old.get(key) != value:
                raise ValueError(f"{directory} holds chunks made with {key}={old.get(key)!r}, not "
                                 f"{value!r}: use the same value, or delete the folder.")
        return
    atomic.write_json(path, plan, indent=1)


def sample_chunks(params, model_config, directory: str, num: int, batch: int, steps: int,
                  seed: int, prior=None) -> int:
    """Samples the missing chunks that no other process holds; returns how many it made.

    Chunk i holds uint8 images [size_i, H, W, C] drawn with fold_in(PRNGKey(seed), i), written
    to a temporary file and renamed, so a chunk on disk is always whole. Several processes may
    run this on the same folder (one per core): each claims a chunk with a lock file first.
    """
    os.makedirs(directory, exist_ok=True)
    sizes = chunk_sizes(num, batch)
    missing = [i for i in range(len(sizes)) if not os.path.exists(_chunk_path(directory, i))]
    progress = Progress(sum(sizes[i] for i in missing), f"sampling (T={steps})", "img",
                        interval=0.0)
    key = jax.random.PRNGKey(seed)

    def make(i: int) -> int:
        path = _chunk_path(directory, i)
        if os.path.exists(path):  # another process may have finished it meanwhile
            return 0
        images = np.asarray(sample(params, None, config=model_config,
                                   rng=jax.random.fold_in(key, i), num_steps=steps,
                                   num_samples=sizes[i], fitted_prior=prior))
        atomic.save_npz(path, images=images)
        return 1

    return _each_claimed(missing, lambda i: _chunk_path(directory, i), sizes, progress, make)


def feature_chunks(directory: str, num: int, batch: int) -> int:
    """Inception features (float32 [size_i, 2048]) of every sampled chunk that has none yet and
    that no other process holds, each to features_<i>.npy; returns how many it made.

    Shared between processes as the sampling is (a lock per chunk), so that several workers
    split the Inception pass too; features whose row count is not the chunk's are made again.
    """
    sizes = chunk_sizes(num, batch)
    todo = [i for i in range(len(sizes)) if os.path.exists(_chunk_path(directory, i))
            and not _has_features(directory, i, sizes[i])]
    progress = Progress(sum(sizes[i] for i in todo), "inception features", "img", interval=0.0)

    def make(i: int) -> int:
        if _has_features(directory, i, sizes[i]):  # made by another process meanwhile
            return 0
        with np.load(_chunk_path(directory, i)) as f:
            images = f["images"]
        features = fid.inception_features(images, progress=False).astype(np.float32)
        atomic.save_npy(_features_path(directory, i), features)
        return 1

    return _each_claimed(todo, lambda i: _features_path(directory, i), sizes, progress, make)


def _each_claimed(todo, path_of, sizes, progress: Progress, make) -> int:
    """make(i) (1 if it made chunk i's file, else 0) for each chunk i of `todo` whose lock
    path_of(i) + ".lock" this process claims, released after; returns the sum. `progress`
    counts the chunks of `todo` whose files exist, whoever made them, so that its rate and ETA
    are the whole set's (a chunk another worker holds counts once written, not once claimed)."""
    made = 0
    for i in todo:
        lock = path_of(i) + ".lock"
        if claim(lock):
            try:
                made += make(i)
            finally:
                release(lock)
        progress.set(sum(sizes[j] for j in todo if os.path.exists(path_of(j))))
    return made


def _has_features(directory: str, index: int, size: int) -> bool:
    path = _features_path(directory, index)
    return os.path.exists(path) and np.load(path, mmap_mode="r").shape == (size, fid.FEATURE_DIM)


def gather_features(directory: str, num: int, batch: int) -> Optional[np.ndarray]:
    """All chunks' features in order, float32 [num, 2048]; None while any is missing."""
    sizes = chunk_sizes(num, batch)
    if not all(_has_features(directory, i, size) for i, size in enumerate(sizes)):
        return None
    return np.concatenate([np.load(_features_path(directory, i)) for i in range(len(sizes))])


def gather(directory: str, num: int, batch: int) -> Optional[np.ndarray]:
    """All chunks in order, uint8 [num, H, W, C]; None while any is missing."""
    paths = [_chunk_path(directory, i) for i in range(len(chunk_sizes(num, batch)))]
    if not all(os.path.exists(p) for p in paths):
        return None
    out = []
    for p in paths:
        with np.load(p) as f:
            out.append(f["images"])
    return np.concatenate(out)


def run(workdir: str, prior_name: str, num: int, steps: int, batch: int,
        seed: int) -> Optional[dict]:
    """Samples the run's missing chunks; once all exist, scores them and writes fid.json.

    Returns the result, or None when other processes still hold chunks (they will score).
    """
    for name, value in (("num_samples", num), ("steps", steps), ("batch", batch)):
        if value < 1:
            raise ValueError(f"--{name}={value} is invalid: expected a positive int.")
    with hold_workdir(workdir, "sample_fid", shared=True):
        return _run(workdir, prior_name, num, steps, batch, seed)


def _run(workdir: str, prior_name: str, num: int, steps: int, batch: int,
         seed: int) -> Optional[dict]:
    params, model_config, step = load_with_step(workdir)
    prior = None
    if prior_name == "learned":
        if not model_config.conditional:
            raise ValueError(f"--prior=learned is invalid for {workdir}: the run has no encoder, "
                             "so no w; use --prior=standard.")
        prior = fitted_prior.load_fitted_prior(workdir)
    directory = out_dir(workdir, prior_name, steps)
    plan = {"num_samples": num, "batch": batch, "seed": seed, "steps": steps,
            "prior": prior_name, "checkpoint_step": step}
    check_plan(directory, plan)
    done = os.path.join(directory, "fid.json")
    if os.path.exists(done):
        return _finished(directory, num, batch)
    start = time.time()
    sample_chunks({"params": params}, model_config, directory, num, batch, steps, seed, prior)
    try:
        feature_chunks(directory, num, batch)
        features = gather_features(directory, num, batch)
        score_lock = os.path.join(directory, "score.lock")
        if features is None or not claim(score_lock):
            print(f"other processes hold the last chunks (or the scoring) of {directory}; the "
                  "last to finish writes fid.json.", flush=True)
            return None
        try:
            if not os.path.exists(done):  # else scored by another process since this one began
                samples = gather(directory, num, batch)
                atomic.save_npz(os.path.join(directory, "samples.npz"), compressed=True,
                                images=samples)
                save_png(os.path.join(directory, "samples.png"), image_grid(samples[:100], 10))
                config, _ = load_run_config(workdir)
                reference = data_lib.load_dataset(config["data"]).test_images
                result = dict(plan, **score(features, reference, directory),
                              num_reference=int(len(reference)), reference="test images",
                              seconds_this_call=round(time.time() - start, 1))
                atomic.write_json(done, result, indent=1)
        finally:
            release(score_lock)
    except ImportError as error:
        raise ValueError(f"FID needs the `fid` extra ({error}): pip install -e \".[fid]\"; the "
                         f"samples are the chunks in {directory}.") from error
    return _finished(directory, num, batch)


def score(features: np.ndarray, reference: np.ndarray, directory: str) -> dict:
    """FID of the samples' Inception features [N, 2048] against reference images, and of SPLITS
    blocks of them; the features are also saved to directory/features.npy for other summaries."""
    atomic.save_npy(os.path.join(directory, "features.npy"), features)
    mu_ref, sigma_ref = fid.reference_statistics(reference, fid_cache_dir())
    splits = SPLITS if len(features) >= 2 * SPLITS else 0
    return {"fid": fid.frechet_distance(*fid.statistics(features), mu_ref, sigma_ref),
            "fid_splits": fid.split_fids(features, mu_ref, sigma_ref, splits) if splits else [],
            "fid_split_size": len(features) // SPLITS if splits else 0}


def _finished(directory: str, num: int, batch: int) -> dict:
    """Prints and returns fid.json; draws samples.png (the first 100 samples) if missing (a
    folder scored before the grid was drawn)."""
    grid = os.path.join(directory, "samples.png")
    if not os.path.exists(grid):
        save_png(grid, image_grid(gather(directory, num, batch)[:100], 10))
    with open(os.path.join(directory, "fid.json")) as f:
        result = json.load(f)
    print(json.dumps(result, indent=1), flush=True)
    return result


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}: every option is a --flag.")
    cli.quiet_logs()
    fl = flags.FLAGS
    cli.check_workdir(fl.workdir, must_exist=True)
    cli.run_or_exit(lambda: run(fl.workdir, fl.prior, fl.num_samples, fl.steps, fl.batch, fl.seed))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
