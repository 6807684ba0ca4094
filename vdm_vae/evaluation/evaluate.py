"""`--mode=eval`: the honest bound, collapse diagnostics, probes, samples/FID and figures.

Writes workdir/eval/metrics.json, bound_per_image.npz, samples.npz and PNG figures, as a whole
(`eval_dir`: a new folder renamed into place), each recording the step evaluated. The config and
data are checked against the run's first (`run_check`); SIGINT / SIGTERM stop the evaluation
with the previous eval/ intact (`Stopped`, exit code 128 + the signal).
"""

import functools
import json
import os
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vdm_vae import data as data_lib
from vdm_vae.evaluation import eval_dir, paired, per_image, plots, run_check
from vdm_vae.metrics import collapse, intervals, probes
from vdm_vae.model import objective
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.vae import VDMVAE, init_params
from vdm_vae.runtime import atomic
from vdm_vae.runtime.console import say, warn
from vdm_vae.runtime.images import image_grid, save_png
from vdm_vae.runtime.locks import hold_run
from vdm_vae.runtime.progress import Progress
from vdm_vae.runtime.signals import Interrupted, Interrupts, Stopped
from vdm_vae.sampling import decode_z0, draw_prior_w, encode, posterior, reverse_steps, sample
from vdm_vae.training.checkpoints import load_with_step

W_USAGE_BINS = 20


@functools.partial(jax.jit, static_argnames=("config",))
def _bound_terms(params, images, rng, t, w, *, config: ModelConfig) -> Dict[str, jax.Array]:
    """Per-example bpd terms [B] for one draw of (t, eps, w)."""
    out = VDMVAE(config).apply(params, images, t=t, w=w, rngs={"sample": rng})
    return objective.bpd_terms(out, config.image_shape)


def bound_metrics(params, images: np.ndarray, config: ModelConfig, batch_size: int,
                  draws: int, out_dir: Optional[str] = None,
                  step: Optional[int] = None) -> Dict[str, float]:
    """Test bpd and its terms with standard errors, `draws` paired draws per image.

    The draws are those of `vdm_vae.evaluation.paired` with its fixed seed, so the per-image
    bounds of two runs on the same images are paired; they are saved to
    out_dir/bound_per_image.npz, with the checkpoint's `step`.
    """
    bounds = paired.per_image_bound(params, images, config, draws=draws,
                                    batch_size=batch_size)
    if out_dir is not None:
        stamp = {} if step is None else {"step": int(step)}
        atomic.save_npz(os.path.join(out_dir, per_image.BOUND_FILE), compressed=True,
                        seed=paired.EVAL_SEED, draws=draws, **stamp, **bounds)
    result = {}
    for name, values in bounds.items():
        stats = intervals.mean_interval(values)
        result[name] = stats["mean"]
        result[f"{name}_stderr"] = stats["stderr"]
    result.update(num_test_images=len(images), mc_draws=draws, eval_seed=paired.EVAL_SEED)
    return result


def collapse_metrics(mean: np.ndarray, logvar: np.ndarray, seed: int) -> Dict[str, object]:
    """KL of w, active units, mutual information, KL per dimension."""
    kl = collapse.kl_per_dim(mean, logvar)
    count, variances = collapse.active_units(mean)
    mi_terms = collapse.mutual_information_terms(mean, logvar, seed)
    return {"kl_w_nats": float(kl.sum(axis=1).mean()), "active_units": int(count),
            "mutual_info_nats": float(np.mean(mi_terms)),
            "mutual_info_stderr_nats": collapse.mutual_information_stderr(mi_terms),
            "mutual_info_max_nats": float(np.log(len(mean))),
            "kl_per_dim_nats": kl.mean(axis=0).tolist(),
            "posterior_mean_variance": variances.tolist()}


def probe_metrics(features: Dict[str, tuple], train_y, test_y) -> Dict[str, object]:
    """Linear and k-NN probe accuracies with 95% intervals, and paired differences.

    Args:
      features: feature set name -> (train_x [N,F], test_x [M,F]); differences are taken
        of "trained" minus each other set, when "trained" is present.
      train_y, test_y: integer labels [N], [M].
    Returns:
      probe_{linear,knn}_acc_<name> (float) and its _ci ([low, high], Wilson), and
      probe_{linear,knn}_diff_trained_<name>: the paired difference of accuracy over the
      test images ({"mean", "stderr", "ci_low", "ci_high", ...}).
    """
    result = {}
    for probe, fn in (("linear", probes.linear_probe_correct), ("knn", probes.knn_correct)):
        correct = {name: fn(train_x, train_y, test_x, test_y)
                   for name, (train_x, test_x) in features.items()}
        for name, c in correct.items():
            stats = intervals.wilson_interval(c)
            result[f"probe_{probe}_acc_{name}"] = stats["mean"]
            result[f"probe_{probe}_acc_{name}_ci"] = [stats["ci_low"], stats["ci_high"]]
        for name in correct:
            if "trained" in correct and name != "trained" and len(test_y) >= 2:
                result[f"probe_{probe}_diff_trained_{name}"] = \
                    intervals.paired_accuracy_difference(correct["trained"], correct[name])
    return result


def pixel_features(train_images: np.ndarray, test_images: np.ndarray, w_dim: int) -> dict:
    """The probes' baselines: {"pixels": (train, test) [N, H*W*C] in [0, 1], "pca": their top
    min(w_dim, ...) principal components (a linear code of w's size)}."""
    pixels = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
    train, test = pixels(train_images), pixels(test_images)
    return {"pixels": (train, test),
            "pca": probes.pca_features(train, test, min(w_dim, *train.shape))}


def w_usage_profile(params, images: np.ndarray, mean: np.ndarray, logvar: np.ndarray,
                    config: ModelConfig, rng: jax.Array) -> Dict[str, list]:
    """Diffusion loss per time bin with w from q(w|x), from the prior, and shuffled across x.

    The same (eps, t) is used for the three choices, so the differences are paired.
    """
    n = len(images)
    rng_q, rng_p, rng_perm, rng_eps = jax.random.split(rng, 4)
    w_post = mean + np.exp(0.5 * logvar) * np.asarray(jax.random.normal(rng_q, mean.shape))
    choices = {"posterior": w_post,
               "prior": np.asarray(draw_prior_w(params, config, n, rng_p)),
               "shuffled": w_post[np.asarray(jax.random.permutation(rng_perm, n))]}
    t_bins = (np.arange(W_USAGE_BINS) + 0.5) / W_USAGE_BINS
    curves = {name: [] for name in choices}
    for i, t in enumerate(t_bins):
        for name, w in choices.items():
            terms = _bound_terms(params, images, jax.random.fold_in(rng_eps, i),
                                 jnp.full((n,), t, jnp.float32), jnp.asarray(w), config=config)
            curves[name].append(float(np.mean(terms["bpd_diff"])))
    return {"t": t_bins.tolist(), **curves}


def generate(params, config: ModelConfig, num: int, batch_size: int, steps: int,
             rng: jax.Array, fitted_prior=None) -> np.ndarray:
    """`num` samples with w from N(0, I) or from a learned prior, uint8 [num,H,W,C]."""
    out = []
    progress = Progress(num, f"sampling (T={steps})", "img", interval=10.0)
    for i, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        out.append(np.asarray(sample(params, None, config=config, rng=jax.random.fold_in(rng, i),
                                     num_steps=steps, num_samples=b, fitted_prior=fitted_prior)))
        progress.update(b)
    return np.concatenate(out)


def slerp(a: np.ndarray, b: np.ndarray, num: int) -> np.ndarray:
    """Spherical interpolation between codes a, b [D]: [num, D] (linear if nearly parallel)."""
    ts = np.linspace(0.0, 1.0, num)[:, None]
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-4:
        return (1 - ts) * a + ts * b
    return (np.sin((1 - ts) * omega) * a + np.sin(ts * omega) * b) / np.sin(omega)


def interpolations(params, pairs: np.ndarray, config: ModelConfig, steps: int, num: int,
                   rng: jax.Array) -> np.ndarray:
    """Decodes the slerp path between the posterior means of each pair of images.

    Every point uses the same noise (same key, batch of one), so only w changes along a row.
    Args: pairs uint8 [P,2,H,W,C]. Returns uint8 [P, num + 2, H, W, C] (ends are the inputs).
    """
    rows = []
    for a, b in pairs:
        mean, _ = encode(params, np.stack([a, b]), config=config)
        path = slerp(np.asarray(mean[0]), np.asarray(mean[1]), num)
        decoded = [np.asarray(sample(params, w[None], config=config, rng=rng,
                                     num_steps=steps))[0] for w in path]
        rows.append(np.stack([a] + decoded + [b]))
    return np.stack(rows)


def reverse_trajectory(params, guide: np.ndarray, config: ModelConfig, steps: int, columns: int,
                       rng: jax.Array) -> np.ndarray:
    """z_1, evenly spaced z_t of one reverse run per guide image (w = its mean), then x.

    Returns [R, columns + 1, H, W, C] in [-1, 1].
    """
    w, _ = encode(params, guide, config=config) if config.conditional else (None, None)
    rng_z, rng_s, rng_x = jax.random.split(rng, 3)
    z = jax.random.normal(rng_z, guide.shape, jnp.float32)
    frames = [np.asarray(z)]
    bounds = np.linspace(0, steps, columns, dtype=int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        z = reverse_steps(params, z, w, rng_s, config=config, num_steps=steps,
                          start=int(start), stop=int(stop))
        frames.append(np.asarray(z))
    x = decode_z0(params, z, rng_x, config=config)
    frames.append(np.asarray(x, np.float32) / (config.vocab_size - 1) * 2.0 - 1.0)
    return np.stack(frames, axis=1)


def limit(images: np.ndarray, labels: Optional[np.ndarray], n: int, field: str):
    """The first `n` images (and labels); all for n < 0; a warning when n exceeds them."""
    if n is None or n < 0:
        return images, labels
    if n == 0:
        raise ValueError(f"{field}=0 is invalid: expected a positive int, or -1 for all.")
    if n > len(images):
        warn(f"{field}={n} is more than the {len(images)} images of the data: using "
             f"{len(images)}.")
    if n >= len(images):
        return images, labels
    return images[:n], None if labels is None else labels[:n]


def representation_metrics(params, dataset, test_images, test_labels, model_config, e, out_dir,
                           batch_size: int, seed: int) -> dict:
    """Collapse diagnostics, probes and their figures.

    Probes are fitted on the trained code mu(x), a randomly initialised encoder's, the raw
    pixels, and the pixels' top-w_dim principal components (a linear code of the same size).
    """
    mean, logvar = posterior(params, test_images, model_config, batch_size, "encode test")
    result = collapse_metrics(mean, logvar, seed)
    plots.plot_kl_per_dim(np.asarray(result["kl_per_dim_nats"]),
                          os.path.join(out_dir, "kl_per_dim.png"), model_config.loss.free_bits)
    random_params = init_params(model_config, jax.random.PRNGKey(seed + 1))
    random_mean, _ = posterior(random_params, test_images, model_config, batch_size,
                               "encode test (random encoder)")
    codes = {"trained encoder": mean, "random encoder": random_mean}
    for method in ("tsne", "pca"):
        plots.plot_embeddings(codes, test_labels, os.path.join(out_dir, f"{method}.png"), method)
    if dataset.train_labels is not None and test_labels is not None:
        train_images, train_labels = limit(dataset.train_images, dataset.train_labels,
                                           e.num_probe_train, "config.eval.num_probe_train")
        train_mean, _ = posterior(params, train_images, model_config, batch_size, "encode train")
        train_random, _ = posterior(random_params, train_images, model_config, batch_size,
                                    "encode train (random encoder)")
        features = {"trained": (train_mean, mean), "random": (train_random, random_mean),
                    **pixel_features(train_images, test_images, model_config.w_dim)}
        result.update(probe_metrics(features, train_labels, test_labels))
        result["probe_pca_components"] = features["pca"][0].shape[1]
        for probe in ("linear", "knn"):
            result[f"probe_{probe}_acc"] = result[f"probe_{probe}_acc_trained"]
            result[f"probe_{probe}_acc_ci"] = result[f"probe_{probe}_acc_trained_ci"]
    else:
        say(f"probes skipped: the data set {dataset.name!r} has no labels.")
    pairs = test_images[:8].reshape((4, 2) + test_images.shape[1:])
    paths = interpolations(params, pairs, model_config, e.sample_steps, 8,
                           jax.random.PRNGKey(seed + 4))
    save_png(os.path.join(out_dir, "interpolation.png"),
             image_grid(paths.reshape((-1,) + paths.shape[2:]), paths.shape[1]))
    usage_images = test_images[:min(256, len(test_images))]
    profile = w_usage_profile(params, usage_images, mean[:len(usage_images)],
                              logvar[:len(usage_images)], model_config,
                              jax.random.PRNGKey(seed + 2))
    plots.plot_w_usage(profile["t"], {k: v for k, v in profile.items() if k != "t"},
                       os.path.join(out_dir, "w_usage.png"))
    result["w_usage_profile"] = profile
    return result


def sample_metrics(params, test_images, model_config, e, out_dir, seed: int,
                   step: int) -> dict:
    """Sample grids, guided generations, the reconstruction figure, samples.npz and FID."""
    rng = jax.random.PRNGKey(seed + 3)
    grid = generate(params, model_config, 64, 64, e.sample_steps, rng)
    save_png(os.path.join(out_dir, "samples.png"), image_grid(grid, 8))
    guide = test_images[:8]
    if model_config.conditional and model_config.encoder.single_code:
        mean, _ = encode(params, guide, config=model_config)
        out = sample(params, jnp.repeat(mean, 7, axis=0), config=model_config,
                     rng=jax.random.fold_in(rng, 1), num_steps=e.sample_steps)
        tiles = np.concatenate([guide[:, None], np.asarray(out).reshape((8, 7) + guide.shape[1:])],
                               axis=1)
        save_png(os.path.join(out_dir, "guided.png"),
                 image_grid(tiles.reshape((-1,) + guide.shape[1:]), 8))
    else:
        say(f"guided.png skipped: encoder.kind={model_config.encoder.kind!r} has no single "
            "code per image.")
    trajectory = reverse_trajectory(params, guide, model_config, e.sample_steps, 8,
                                    jax.random.fold_in(rng, 2))
    plots.plot_reconstructions(guide, trajectory, os.path.join(out_dir, "reconstruction.png"))
    result = {"num_fid_samples": int(e.num_fid_samples), "sample_steps": int(e.sample_steps)}
    if e.num_fid_samples <= 0:
        say(f"samples.npz and FID skipped: config.eval.num_fid_samples={e.num_fid_samples} "
            "(set it > 0 to write them).")
    else:
        samples = generate(params, model_config, e.num_fid_samples, e.fid_batch_size,
                           e.sample_steps, jax.random.fold_in(rng, 3))
        atomic.save_npz(os.path.join(out_dir, "samples.npz"), compressed=True, images=samples,
                        step=int(step))
        result["fid"] = _fid_or_none(samples, test_images)
    return result


def fid_cache_dir() -> str:
    """Where the reference sets' FID statistics are kept, shared by every run of a machine:
    `$VDM_VAE_FID_CACHE`, else `~/.cache/vdm_vae/fid` (keyed by the images and the network,
    so a changed reference set is never served stale statistics)."""
    return os.path.expanduser(os.environ.get("VDM_VAE_FID_CACHE", "~/.cache/vdm_vae/fid"))


def _fid_or_none(samples: np.ndarray, reference: np.ndarray) -> Optional[float]:
    """FID if torch and the Inception weights are installed (the `fid` extra), else None."""
    try:
        from vdm_vae.metrics import fid
        return float(fid.fid_from_arrays(samples, reference, cache_dir=fid_cache_dir()))
    except ImportError as error:
        print(f"FID skipped ({error}); score samples.npz later with "
              "`python -m vdm_vae.metrics.fid samples.npz REFERENCE`.", flush=True)
        return None


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             allow_config_change: bool = False) -> dict:
    """Evaluates the latest checkpoint's EMA parameters into workdir/eval/ (replaced as a
    whole), holding the workdir's lock; returns the metrics (also eval/metrics.json).

    Args:
      allow_config_change: evaluate even if `config` or its data differ from the run's
        config.json (the differences are recorded as metrics["config_changes"]); else a
        ValueError names them.
    Raises:
      Stopped: on SIGINT / SIGTERM, once the partial evaluation is removed (said on stdout).
    """
    e = config.eval
    if e.mc_draws < 1:
        raise ValueError(f"config.eval.mc_draws={e.mc_draws} is invalid: expected an int >= 1.")
    with Interrupts() as interrupts:
        try:
            with hold_run(workdir, "evaluation (--mode=eval)"):
                metrics = _evaluate(config, workdir, allow_config_change, interrupts)
        except Interrupted as interrupted:
            kept = eval_dir.recorded_step(os.path.join(workdir, eval_dir.EVAL_DIR,
                                                       "metrics.json"))
            kept = ("no eval/ was written" if kept is None
                    else f"eval/ keeps the evaluation of step {kept}")
            say(f"Signal {interrupted.signum}: evaluation stopped; {kept}.")
            raise Stopped(interrupted.signum) from None
    if interrupts.received is not None:  # came while eval/ was renamed into place
        say(f"Signal {interrupts.received}: the evaluation of step {metrics['step']} was "
            "written whole, then stopped.")
        raise Stopped(interrupts.received, metrics["step"])
    return metrics


def _evaluate(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool,
              interrupts: Interrupts) -> dict:
    e = config.eval
    dataset = data_lib.load_dataset(config.data)
    changes = run_check.check(workdir, config, dataset, allow_config_change)
    if changes:
        warn(f"evaluating with a config or data that differ from the run's: {'; '.join(changes)}.")
    params, model_config, step = load_with_step(workdir)
    params = {"params": params}
    seed = int(config.training.seed)
    batch_size = int(config.training.batch_size_eval)
    test_images, test_labels = limit(dataset.test_images, dataset.test_labels,
                                     e.num_test_images, "config.eval.num_test_images")
    metrics = {"step": step, "config": config.name, "workdir": workdir,
               "conditional": model_config.conditional,
               # A time-conditioned encoder has a code w_t per time: no single-latent bound.
               "bpd_is_bound": not model_config.encoder.time_conditioned}
    if changes:
        metrics["config_changes"] = changes
    with eval_dir.replacing(workdir, step, before_commit=interrupts.hold) as out_dir:
        metrics.update(bound_metrics(params, test_images, model_config, batch_size, e.mc_draws,
                                     out_dir, step))
        if model_config.conditional and model_config.encoder.single_code:
            metrics.update(representation_metrics(params, dataset, test_images, test_labels,
                                                  model_config, e, out_dir, batch_size, seed))
        else:
            say(f"KL of w, active units, probes and kl_per_dim / tsne / pca / interpolation / "
                f"w_usage figures skipped: encoder.kind={model_config.encoder.kind!r} has no "
                "single code per image.")
        metrics.update(sample_metrics(params, test_images, model_config, e, out_dir, seed,
                                      step))
        atomic.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))},
                     indent=1), flush=True)
    return metrics
