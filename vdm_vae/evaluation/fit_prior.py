"""Fits the learned prior p_psi(w) of a trained run and reports the bound under it.

  python -m vdm_vae.evaluation.fit_prior --config=configs/mvdm_oe.py --workdir=runs/mvdm_oe \
      --steps=5000

The KL bound is evaluated on every test image with 16 draws each (--num_test_images,
--draws) and reported with its standard error. Writes workdir/w_prior/ (parameters),
workdir/eval/w_prior.json, workdir/eval/w_prior_per_image.npz (each test image's KL bound in
bits/dim, in the test set's order, which `experiments/collect.py` pairs with `--mode=eval`'s
per-image bound) and workdir/eval/samples_learned_prior.png, each recording the checkpoint's
step (so that a later `--mode=eval` of the same step keeps them, `eval_dir`). Run `--mode=eval`
first to have the bound's other terms. It holds the workdir's lock while it runs.
"""

import json
import os

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vdm_vae import data as data_lib
from vdm_vae.evaluation import fitted_prior, per_image, run_check
from vdm_vae.evaluation.evaluate import generate, posterior
from vdm_vae.metrics import intervals
from vdm_vae.model.diffusion import bits_per_dim_factor
from vdm_vae.runtime import atomic, cli
from vdm_vae.runtime.images import image_grid, save_png
from vdm_vae.runtime.locks import hold_workdir
from vdm_vae.training.checkpoints import load_with_step


def define_flags():
    """Defines the command's flags (only when run as a command: the module imports anywhere)."""
    config_flags.DEFINE_config_file("config", None, "The run's config file.")
    flags.DEFINE_string("workdir", None, "The run's workdir.")
    flags.DEFINE_integer("steps", 5000, "Optimiser steps for the prior.")
    flags.DEFINE_integer("batch", 512, "Batch of w per step.")
    flags.DEFINE_integer("hidden", 512, "Width of the prior's MLP.")
    flags.DEFINE_integer("num_test_images", -1, "Test images for the KL bound (-1: all).")
    flags.DEFINE_integer("draws", 16, "Draws of (w, t, eps) per test image for the KL bound.")
    flags.DEFINE_bool("allow_config_change", False, "Fit even if the config or the data differ "
                      "from the run's config.json (the differences are recorded in "
                      "eval/w_prior.json).")
    flags.mark_flags_as_required(["config", "workdir"])


def check_kl_bound(stats: dict, what: str = "KL(q(w|x) || p_psi) bound"):
    """Raises ValueError if a KL bound's mean is below 0 by more than 3 standard errors.

    A KL is >= 0 and the bound is above it in expectation, so such a value is a bug (or the
    wrong inputs), never a result.
    """
    if stats["mean"] < -3.0 * stats["stderr"]:
        raise ValueError(f"the {what} is {stats['mean']:.4f} +- {stats['stderr']:.4f} nats, "
                         "below 0 by more than 3 standard errors: a KL cannot be negative, so "
                         "this is a bug to find, not a result.")


def prior_report(params, prior_params, prior_config, model_config, test_images, batch, rng,
                 draws: int = 16):
    """KL bound to the learned prior on the test set, with its standard error, and bits/dim.

    Returns: (report dict, each test image's KL bound in bits/dim [N]).
    Raises ValueError if the bound is negative beyond its noise (`check_kl_bound`).
    """
    mean, logvar = posterior(params, test_images, model_config, batch, "encode test")
    kl = np.asarray(fitted_prior.kl_to_prior_bound(prior_params, mean, logvar, rng, prior_config,
                                              draws=draws), np.float64)
    kl_std = 0.5 * np.sum(mean ** 2 + np.exp(logvar) - 1.0 - logvar, axis=-1)
    stats = intervals.mean_interval(kl)
    check_kl_bound(stats)
    k = bits_per_dim_factor(model_config.image_shape)
    report = {"kl_w_learned_prior_nats": stats["mean"],
            "kl_w_learned_prior_stderr_nats": stats["stderr"],
            "kl_w_learned_prior_ci_nats": [stats["ci_low"], stats["ci_high"]],
            "kl_w_standard_prior_nats": float(kl_std.mean()),
            "bpd_kl_w_learned_prior": stats["mean"] * k,
            "bpd_kl_w_learned_prior_stderr": stats["stderr"] * k,
            "bpd_kl_w_standard_prior": float(kl_std.mean() * k),
            "kl_num_test_images": len(test_images), "kl_draws": draws}
    return report, kl * k


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}: every option is a --flag.")
    cli.quiet_logs()
    fl = flags.FLAGS
    cli.check_workdir(fl.workdir, must_exist=True)
    for name, value in (("steps", fl.steps), ("batch", fl.batch), ("hidden", fl.hidden)):
        if value < 1:
            cli.fail(f"--{name}={value} is invalid: expected a positive int.")
    cli.run_or_exit(lambda: fit_and_report(fl.config, fl.workdir, fl.steps, fl.batch, fl.hidden,
                                           fl.num_test_images, fl.draws,
                                           fl.allow_config_change))


def fit_and_report(config, workdir: str, steps: int, batch_w: int, hidden: int,
                   num_test: int, draws: int, allow_config_change: bool = False):
    """Fits the prior of the run in `workdir`; writes and prints the report.

    steps, batch_w, hidden: the prior's optimiser steps, batch of w and MLP width;
    num_test (-1: all) test images with `draws` draws each for the KL bound. A config or data
    that differ from the run's config.json are refused (ValueError naming them) unless
    allow_config_change, as for `main.py --mode=eval`.
    """
    with hold_workdir(workdir, "fit_prior"):
        _fit_and_report(config, workdir, steps, batch_w, hidden, num_test, draws,
                        allow_config_change)


def _fit_and_report(config, workdir: str, steps: int, batch_w: int, hidden: int,
                    num_test: int, draws: int, allow_config_change: bool):
    params, model_config, step = load_with_step(workdir)
    if not model_config.conditional:
        raise ValueError(f"the run in {workdir} has no encoder (config.model.encoder.kind="
                         "'none'): there is no w to put a prior on.")
    params = {"params": params}
    dataset = data_lib.load_dataset(config.data)
    changes = run_check.check(workdir, config, dataset, allow_config_change)
    batch = int(config.training.batch_size_eval)
    mean, logvar = posterior(params, dataset.train_images, model_config, batch, "encode train")
    prior_config = fitted_prior.PriorConfig(w_dim=model_config.w_dim, hidden=hidden)
    rng = jax.random.PRNGKey(int(config.training.seed))
    prior_params, history = fitted_prior.fit(mean, logvar, prior_config, steps, batch_w, rng)
    fitted_prior.save(os.path.join(workdir, "w_prior"), prior_params, prior_config)
    test_images = dataset.test_images if num_test < 0 else dataset.test_images[:num_test]
    report, kl_bpd = prior_report(params, prior_params, prior_config, model_config, test_images,
                                  batch, jax.random.fold_in(rng, 1), draws)
    report.update(step=step, steps=steps, loss_history_nats=history)
    if changes:
        report["config_changes"] = changes
    out_dir = os.path.join(workdir, "eval")
    metrics_path = os.path.join(out_dir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            m = json.load(f)
        if m.get("step") == step:  # the bound's other terms, of the same checkpoint
            report["bpd_learned_prior"] = (m["bpd"] - m["bpd_kl_w"]
                                           + report["bpd_kl_w_learned_prior"])
    os.makedirs(out_dir, exist_ok=True)
    atomic.save_npz(os.path.join(out_dir, per_image.PRIOR_FILE), bpd_kl_w_learned_prior=kl_bpd,
                    step=step)
    samples = generate(params, model_config, 64, 64, config.eval.sample_steps,
                       jax.random.fold_in(rng, 2), fitted_prior=(prior_params, prior_config))
    save_png(os.path.join(out_dir, "samples_learned_prior.png"), image_grid(samples, 8), step)
    atomic.write_json(os.path.join(out_dir, "w_prior.json"), report, indent=1)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
