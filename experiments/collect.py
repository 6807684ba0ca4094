"""Collects every runs/<root>/*/eval/metrics.json into experiments/results/<name>.md + plots.

  python experiments/collect.py --root=runs/cpu --name=mvdm_cpu \
      --command="python experiments/run_grid.py --grid=mvdm --steps=2000 --root=runs/cpu"
  python experiments/collect.py --root=runs/cpu --status   # each run's step, CPU time, last eval

With --curves the page also has every run's progress (step reached, CPU hours, last periodic
evaluation), its learning curves against CPU hours and its sample grids along training, for
runs still in progress too.

Every number comes from the metrics files (and a run's eval/w_prior.json, from
`python -m vdm_vae.evaluation.fit_prior`, for the bound under the learned prior, and its
eval/fid_<prior>_T<steps>/fid.json, from `python -m vdm_vae.evaluation.sample_fid`, for FID);
the study's
numbers are quoted beside ours. A symlinked run folder is an alias and is skipped. Each run's
evaluation figures are copied to results/<name>_figures/. Where runs have a linear probe on
mu(x), results/<name>_targets.png sets it against the bound and against the CPU time spent
(experiments/targets.py).
"""

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Optional

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import matplotlib.pyplot as plt  # noqa: E402
import plot_curves  # noqa: E402
import seeds  # noqa: E402  (experiments/seeds.py)
import targets  # noqa: E402  (experiments/targets.py)

from vdm_vae.cpu.env import available_cores, cpu_name  # noqa: E402
from vdm_vae.evaluation import per_image  # noqa: E402
from vdm_vae.metrics import intervals  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# The study's MNIST table (BPD, FID from its last batch of 128 samples, encoder KL).
STUDY = {
    "svdm_oepp": (0.94309, 60, 0), "svdm_oe": (0.88821, 61, 0), "svdm_se": (0.94194, 61, 0),
    "svdm_te": (0.94323, 60, 0), "svdm_ue": (0.80847, 154, None), "svdm": (0.93576, 60, None),
    "tvdm_oepp": (1.05371, 64, 0), "tvdm_oe": (1.02508, 69, 0), "tvdm_se": (1.05534, 67, 0),
    "tvdm_te": (1.03958, 73, 0), "tvdm_ue": (0.98145, 193, None), "tvdm": (1.03694, 63, None),
    "mvdm_oepp": (1.13523, 101, 0), "mvdm_oe": (1.15056, 118, 0), "mvdm_se": (1.15433, 120, 0),
    "mvdm_te": (1.16660, 131, 0), "mvdm_ue": (1.13258, 187, None), "mvdm": (1.10882, 90, None),
}
# The results' three tables: the bound with its terms, the samples and the code w (probes on
# mu(x) beside a random encoder's, the pixels' and their top principal components').
BOUND_COLUMNS = ("bpd", "bpd_stderr", "bpd_recon", "bpd_prior", "bpd_diff", "bpd_kl_w",
                 "bpd_learned_prior")
SAMPLE_COLUMNS = ("fid", "fid_learned_prior")
CODE_COLUMNS = ("kl_w_nats", "kl_w_learned_prior_nats", "active_units", "mutual_info_nats") + tuple(
    f"probe_{kind}_acc{of}" for kind in ("linear", "knn")
    for of in ("", "_random", "_pixels", "_pca"))
ENCODER_ORDER = ("oepp", "oe", "se", "te", "ue", "none")
LOG_SCALE = ("kl_w_nats",)  # UE's KL is hundreds of times the others


FIGURES = ("samples", "guided", "interpolation", "tsne", "w_usage", "kl_per_dim",
           "samples_learned_prior")
PRIOR_KEYS = ("bpd_learned_prior", "kl_w_learned_prior_nats", "kl_w_learned_prior_stderr_nats")
UNCOND_DIFF = targets.UNCOND_DIFF  # paired difference to the unconditional run of the same VDM
# the same with the KL of w to the learned prior (vdm_vae.evaluation.fit_prior) in place of
# N(0, I)'s
LEARNED_DIFF = targets.LEARNED_DIFF
# the diffusion term's paired difference: what the decoder gains from w
DIFFUSION_DIFF = "bpd_diff_minus_uncond"
FID_DIFF = "fid_minus_uncond"  # its FID minus the unconditional run's, over blocks of samples
FID_LEARNED_DIFF = "fid_learned_prior_minus_uncond"  # the same with w from the learned prior
ACROSS_SEEDS = "across_seeds"  # the JSON's entry for experiments/seeds.py's summary, not a run

def unconditional_baseline(name: str, names) -> Optional[str]:
    """The unconditional run among `names` that run `name` is compared with, or None.

    A grid run <vdm>_<encoder>[...] has <vdm>; any other run <a>_<b>_..., the run named
    <prefix>_uncond_<last> (a run of the same schedule: mnist_cpu_c30_10k -> mnist_cpu_uncond_10k)
    or else <prefix>_uncond, for its longest prefix <a>_<b>... that has one (mnist_cpu_ungated ->
    mnist_cpu_uncond). An unconditional run (a part of its name is "uncond") has none.
    """
    vdm, encoder = split_name(name)
    if encoder != "none":
        return vdm if vdm in names else None
    parts = name.split("_")
    if "uncond" in parts:
        return None
    for end in range(len(parts), 0, -1):
        for candidate in ("_".join(parts[:end] + ["uncond", parts[-1]]),
                          "_".join(parts[:end]) + "_uncond"):
            if candidate in names:
                return candidate
    return None


def same_schedule(run: dict, base: dict) -> bool:
    """Whether two runs' rows were trained for the same number of steps (a paired difference
    between runs of different schedules would credit the encoder with the longer training)."""
    return run.get("step") is not None and run.get("step") == base.get("step")


def paired_to_uncond(root: str, runs: dict):
    """Adds UNCOND_DIFF and DIFFUSION_DIFF to each run whose VDM size has an unconditional run
    in `root`, and LEARNED_DIFF where the run's learned prior was fitted.

    Uses each run's eval/bound_per_image.npz (`--mode=eval`): the per-image bounds of runs
    evaluated with the same seed and draws on the same images are paired. Under the learned
    prior each image's bound is its bound with its KL of w to N(0, I) replaced by its KL bound
    to the prior (eval/w_prior_per_image.npz, `vdm_vae.evaluation.fit_prior` on the whole test set).
    """
    bounds, learned = {}, {}
    for name in runs:
        try:
            bounds[name] = per_image.load(os.path.join(root, name))
        except ValueError:  # not evaluated here (e.g. a row kept from an earlier collect)
            continue
        learned[name] = per_image.learned_prior_bound(os.path.join(root, name), bounds[name])
    for name, m in runs.items():
        base = unconditional_baseline(name, bounds)
        if base is None or name not in bounds or not same_schedule(m, runs[base]):
            continue
        try:
            diffs = per_image.paired_terms(bounds[name], bounds[base], name, base)
        except ValueError:  # evaluated with other draws or images: no paired difference
            continue
        m[UNCOND_DIFF] = diffs["bpd"]
        if "bpd_diff" in diffs:
            m[DIFFUSION_DIFF] = diffs["bpd_diff"]
        if learned[name] is not None:
            m[LEARNED_DIFF] = intervals.paired_difference(learned[name], bounds[base]["bpd"])


def fid_to_uncond(runs: dict):
    """Adds FID_DIFF (w from N(0, I)) and FID_LEARNED_DIFF (w from the learned prior) where a run
    and its unconditional run have FIDs of blocks of samples of one size at one T
    (`vdm_vae.evaluation.sample_fid`): the difference of the blocks' mean FIDs with Welch's interval
    (independent samples), at that block size."""
    for name, m in runs.items():
        base = runs.get(unconditional_baseline(name, runs) or "", {})
        if not same_schedule(m, base):
            continue
        for key, out in (("fid", FID_DIFF), ("fid_learned_prior", FID_LEARNED_DIFF)):
            splits, size, steps = (m.get(f"{key}_splits"), m.get(f"{key}_split_size"),
                                   m.get(f"{key}_steps"))
            if splits and base.get("fid_splits") and (size, steps) == (
                    base.get("fid_split_size"), base.get("fid_steps")):
                m[out] = dict(intervals.independent_difference(splits, base["fid_splits"]),
                              block_size=size)


def sample_fids(eval_dir: str) -> dict:
    """FIDs that `vdm_vae.evaluation.sample_fid` wrote in eval_dir: for each prior, the one with
    the most
    samples (then the most steps), as {fid[_learned_prior], <its key>_samples, <its key>_steps}."""
    best = {}
    for path in glob.glob(os.path.join(eval_dir, "fid_*_T*", "fid.json")):
        with open(path) as f:
            result = json.load(f)
        key = "fid" if result["prior"] == "standard" else "fid_learned_prior"
        rank = (result["num_samples"], result["steps"])
        if key not in best or rank > best[key][0]:
            best[key] = (rank, result)
    out = {}
    for key, (_, result) in best.items():
        out.update({key: result["fid"], f"{key}_samples": result["num_samples"],
                    f"{key}_steps": result["steps"]})
        if result.get("fid_splits"):
            out.update({f"{key}_splits": result["fid_splits"],
                        f"{key}_split_size": result["fid_split_size"]})
    return out


def load_runs(root: str, patterns=("*",)) -> dict:
    """name -> eval/metrics.json of each run whose name matches `patterns`, plus the learned
    prior's bound where eval/w_prior.json is, the FIDs of `sample_fids` (which replace the
    evaluation's own), and the paired difference to the unconditional run (`paired_to_uncond`).
    The FID differences (`fid_to_uncond`) come once the runs of earlier collects are merged."""
    runs = {}
    for workdir in plot_curves.workdirs(root, os.path.join("eval", "metrics.json"), patterns):
        path = os.path.join(workdir, "eval", "metrics.json")
        with open(path) as f:
            metrics = json.load(f)
        prior_path = os.path.join(os.path.dirname(path), "w_prior.json")
        if os.path.exists(prior_path):
            with open(prior_path) as f:
                prior = json.load(f)
            metrics.update({k: prior[k] for k in PRIOR_KEYS if k in prior})
            if "kl_w_learned_prior_ci_nats" in prior:
                metrics["kl_w_learned_prior_nats_ci"] = prior["kl_w_learned_prior_ci_nats"]
            if ("bpd_learned_prior" not in prior and "bpd_kl_w_learned_prior" in prior
                    and "bpd_kl_w" in metrics):
                # the prior was fitted before the evaluation that gives the other terms
                metrics["bpd_learned_prior"] = (metrics["bpd"] - metrics["bpd_kl_w"]
                                                + prior["bpd_kl_w_learned_prior"])
        metrics.update(sample_fids(os.path.dirname(path)))
        runs[os.path.basename(workdir)] = metrics
    paired_to_uncond(root, runs)
    return runs


def copy_figures(root: str, runs, out_dir: str):
    """Copies each run's eval figures to out_dir/<run>_<figure>.png, and the first samples of
    each FID set (`vdm_vae.evaluation.sample_fid`) to out_dir/<run>_fid_<prior>_T<steps>.png."""
    for name in runs:
        eval_dir = os.path.join(root, name, "eval")
        paths = {f"{name}_{figure}.png": os.path.join(eval_dir, f"{figure}.png")
                 for figure in FIGURES}
        for path in glob.glob(os.path.join(eval_dir, "fid_*_T*", "samples.png")):
            paths[f"{name}_{os.path.basename(os.path.dirname(path))}.png"] = path
        for target, path in paths.items():
            if os.path.exists(path):
                os.makedirs(out_dir, exist_ok=True)
                shutil.copyfile(path, os.path.join(out_dir, target))


def previous_runs(name: str) -> dict:
    """The runs of an earlier results/<name>.json; those saved without a command get the one
    its results/<name>.md names."""
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        runs = json.load(f)
    runs.pop(ACROSS_SEEDS, None)
    command = None
    md = os.path.join(RESULTS, f"{name}.md")
    if os.path.exists(md):
        with open(md) as f:
            found = re.search(r"^Runs: `(.+)`$", f.read(), re.MULTILINE)
        command = found.group(1) if found else None
    return {n: dict(m, command=m.get("command", command)) for n, m in runs.items()}


def made_by(runs: dict) -> list:
    """Markdown lines: each command and the configs it made."""
    by_command = {}
    for name, m in runs.items():
        by_command.setdefault(m.get("command") or "unknown", []).append(name)
    return [f"- `{c}`: {', '.join(names)}" for c, names in by_command.items()]


def split_name(name: str):
    parts = name.split("_")
    return parts[0], (parts[1] if len(parts) > 1 and parts[1] in ENCODER_ORDER else "none")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def machine() -> str:
    return f"{cpu_name()} x {available_cores()}"


def versions() -> str:
    import flax
    import jax
    import optax

    return f"python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, " \
           f"optax {optax.__version__}"


def _cell(m: dict, column: str) -> str:
    """A table cell: the value, with its 95% interval (`<column>_ci`) or sample count where
    the run has one."""
    value = m.get(column)
    if column in ("fid", "fid_learned_prior") and value is not None:
        samples = m.get(f"{column}_samples", m.get("num_fid_samples"))
        steps = m.get(f"{column}_steps", m.get("sample_steps"))
        return f"{_fmt(value)} (n={samples}, T={steps})"
    ci = m.get(f"{column}_ci")
    if value is not None and ci is not None:
        return intervals.format_interval({"mean": value, "ci_low": ci[0], "ci_high": ci[1]}, 3)
    return _fmt(value)


def _diff_cell(diff: Optional[dict], digits: int = 4) -> str:
    return "-" if diff is None else intervals.format_interval(diff, digits)


def _markdown(head: list, rows: list) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _step(name: str, m: dict) -> list:
    return [name, _fmt(m.get("step"))]


def _bound_row(name: str, m: dict) -> list:
    diff = m.get(UNCOND_DIFF)
    se = "-" if diff is None else f"{diff['stderr']:.4f} / {diff['unpaired_stderr']:.4f}"
    return (_step(name, m) + [_cell(m, c) for c in BOUND_COLUMNS]
            + [_diff_cell(diff), se, _diff_cell(m.get(DIFFUSION_DIFF)),
               _diff_cell(m.get(LEARNED_DIFF)),
               _fmt(STUDY.get(name, (None,) * 3)[0])])


def _sample_row(name: str, m: dict) -> list:
    cells = ["-" if m.get(k) is None else f"{_diff_cell(m[k], 2)} (n={m[k]['block_size']})"
             for k in (FID_DIFF, FID_LEARNED_DIFF)]
    return (_step(name, m) + [_cell(m, c) for c in SAMPLE_COLUMNS]
            + cells + [_fmt(STUDY.get(name, (None,) * 3)[1])])


def _code_row(name: str, m: dict) -> list:
    return (_step(name, m) + [_cell(m, c) for c in CODE_COLUMNS]
            + [_diff_cell(m.get("probe_linear_diff_trained_pixels"), 3),
               _fmt(STUDY.get(name, (None,) * 3)[2])])


def table(runs: dict) -> str:
    """The three tables (bound, samples, code w), one row per run, the study's value last."""
    head = ["config", "step"]
    bound = _markdown(head + list(BOUND_COLUMNS) + [
        "bpd - bpd(uncond) [95% CI]", "se paired / unpaired",
        "bpd_diff - bpd_diff(uncond) [95% CI]", "bpd_learned_prior - bpd(uncond) [95% CI]",
        "study bpd"],
        [_bound_row(n, m) for n, m in runs.items()])
    samples = _markdown(head + list(SAMPLE_COLUMNS) + [
        "fid - fid(uncond) [95% CI] (block size)",
        "fid_learned_prior - fid(uncond) [95% CI] (block size)", "study FID"],
        [_sample_row(n, m) for n, m in runs.items()])
    code = _markdown(head + list(CODE_COLUMNS) + [
        "linear: mu(x) - pixels [95% CI]", "study KL"],
        [_code_row(n, m) for n, m in runs.items()])
    return "\n\n".join([f"The bound (bits/dim):\n\n{bound}", f"Samples:\n\n{samples}",
                         f"The code w (nats; probe accuracies on the test set):\n\n{code}"])


def _is_grid(runs: dict) -> bool:
    """True when some run is named as the study's grid names them (<size>[_<encoder>])."""
    return any(n in (size, f"{size}_{enc}") for n in runs for size, enc in [split_name(n)])


def plot_metric_groups(runs: dict, metrics, path: str):
    """One panel per metric: bars grouped by VDM size and coloured by encoder for the study's
    grid (runs named otherwise are left out); one bar per run when none is named so."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    grid = _is_grid(runs)
    groups = sorted({split_name(n)[0] for n in runs}) if grid else sorted(runs)
    for ax, metric in zip(axes[0], metrics):
        for j, enc in enumerate(ENCODER_ORDER if grid else [None]):
            xs, ys = [], []
            for i, group in enumerate(groups):
                m = runs.get(group if enc in ("none", None) else f"{group}_{enc}")
                if m is not None and m.get(metric) is not None:
                    xs.append(i + (j - 2.5) * 0.13 if grid else i)
                    ys.append(m[metric])
            if xs:
                ax.bar(xs, ys, width=0.13 if grid else 0.6, label=enc, color=f"C{j}")
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([g.upper() for g in groups] if grid else groups,
                           rotation=0 if grid else 30, ha="center" if grid else "right")
        ax.set_title(metric + (" (log scale)" if metric in LOG_SCALE else ""))
        if metric in LOG_SCALE:
            ax.set_yscale("log")
        if ax.containers and grid:
            ax.legend(title="encoder", fontsize=7)
        elif not ax.containers:
            ax.text(0.5, 0.5, f"no {metric} in these runs", transform=ax.transAxes,
                    ha="center", va="center")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--name", help="results/<name>.md and .json")
    parser.add_argument("--command", help="the command that made the runs")
    parser.add_argument("--runs", default="*", help="comma-separated shell patterns of the run "
                        "folders under --root to collect (default: all)")
    parser.add_argument("--status", action="store_true",
                        help="print each run's step, CPU hours and last eval, and stop")
    parser.add_argument("--curves", action="store_true",
                        help="add progress, learning curves and sample strips of every run")
    parser.add_argument("--notes", default="", help="a file whose text is appended (the reading)")
    parser.add_argument("--matched-probes", default=None, help="a folder of "
                        "experiments/probe_checkpoint.py's <run>_step<S>.json, drawn on the "
                        "targets figure's probe-against-budget panel")
    parser.add_argument("--merge", action="store_true", help="keep the runs of results/<name>.json "
                        "that --root does not hold (each with the command that made it)")
    args = parser.parse_args(argv)
    patterns = args.runs.split(",")
    if args.status:
        print(plot_curves.progress_table(plot_curves.progress(args.root, patterns)))
        return
    if not args.name or not args.command:
        parser.error("--name and --command are required (or --status)")
    runs = {name: dict(m, command=args.command)
            for name, m in load_runs(args.root, patterns).items()}
    copy_figures(args.root, runs, os.path.join(RESULTS, f"{args.name}_figures"))
    if args.merge:
        runs = dict(sorted({**previous_runs(args.name), **runs}.items()))
    fid_to_uncond(runs)
    in_progress = plot_curves.progress(args.root, patterns) if args.curves else {}
    if not runs and not in_progress:
        parser.error(f"no */eval/metrics.json under {args.root}")
    os.makedirs(RESULTS, exist_ok=True)
    progress_text = []
    if in_progress:
        names = list(in_progress)
        plot_curves.plot_curves(args.root, names, os.path.join(RESULTS, f"{args.name}_curves.png"))
        strips = plot_curves.plot_sample_strips(args.root, names,
                                           os.path.join(RESULTS, f"{args.name}_samples.png"))
        progress_text = ["## Progress", "", "Each run at the step it reached, with its CPU time "
                         "(all cores, evaluations included) and its last periodic evaluation "
                         "(EMA parameters, fixed test images and draws):", "",
                         plot_curves.progress_table(in_progress), "",
                         f"![learning curves]({args.name}_curves.png)", ""]
        pairs = [(n, unconditional_baseline(n, names)) for n in names]
        if plot_curves.plot_gaps(args.root, [(n, b) for n, b in pairs if b],
                            os.path.join(RESULTS, f"{args.name}_gaps.png")):
            progress_text += [f"![paired gaps to the unconditional run]({args.name}_gaps.png)",
                              ""]
        if strips:
            progress_text += [f"![samples along training]({args.name}_samples.png)", ""]
    if runs:
        plot_metric_groups(runs, ("bpd", "fid"), os.path.join(RESULTS, f"{args.name}_bpd_fid.png"))
        plot_metric_groups(runs, ("kl_w_nats", "probe_linear_acc"),
                           os.path.join(RESULTS, f"{args.name}_kl_probe.png"))
        has_targets = targets.plot_targets(runs, args.root,
                                           os.path.join(RESULTS, f"{args.name}_targets.png"),
                                           args.matched_probes)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    started = [n for n in in_progress if n not in runs]
    made = made_by(runs) + ([f"- `{args.command}`: {', '.join(started)} (in progress)"]
                            if started else [])
    text = [f"# {args.name}", "", "Runs:"] + made + [
            "", f"Collected: `python experiments/collect.py --root={args.root} --name={args.name}"
            f"{f' --runs={args.runs}' if args.runs != '*' else ''}"
            f"{' --merge' if args.merge else ''}{' --curves' if args.curves else ''}`",
            f"Machine: {machine()}; {versions()}; commit {commit}.", ""] + progress_text
    final = ["No run has finished its training and evaluation (`main.py --mode=eval`) yet.", ""]
    if runs:
        final = [
            table(runs), "", "bpd - bpd(uncond): the mean paired difference of each image's "
                "bound to the unconditional run of the same VDM size (same test images, same draws "
                "of t and noise), with its 95% interval and its standard error next to the "
                "unpaired one; bpd_diff - bpd_diff(uncond): the same for the diffusion term "
                "alone (what w wins back in the decoder; the rest of the difference is the KL "
                "of w); "
                "bpd_learned_prior - bpd(uncond): the same with each image's KL "
                "of w to N(0, I) replaced by its KL bound to the learned prior "
                "(`vdm_vae.evaluation.fit_prior`, 16 draws of its own per image). "
                "Probe accuracies: 95% "
                "Wilson intervals over the test images; mu(x) - pixels: the paired difference of "
                "the linear probes' accuracies, image by image. fid (n samples at T steps; "
                "`vdm_vae.evaluation.sample_fid`); fid - fid(uncond): the "
                "difference of the mean FIDs of disjoint blocks of each run's samples (block size "
                "n, so both FIDs are those of n samples, above the FID of all), with Welch's 95% "
                "interval; fid_learned_prior - fid(uncond): the same with w from the learned "
                "prior.", "",
                f"![bpd and FID]({args.name}_bpd_fid.png)",
                f"![KL and probe]({args.name}_kl_probe.png)", ""] + ([
                f"![the targets: probe against bound, and probe against budget]"
                f"({args.name}_targets.png)", "", "Left: each encoder run's linear probe on "
                "mu(x) against its bound's paired difference to the unconditional run of its "
                "schedule (w from N(0, I) filled, from the learned prior open; 95% intervals); "
                "the shaded corner meets both targets. Right: the full linear probe against the "
                "CPU hours the run had used at that step (its final evaluation and the kept "
                "checkpoints probed by `experiments/probe_checkpoint.py`); dotted: the budget "
                "of about 2 hours of 2 cores.", ""] if has_targets else []) + [
                f"Each run's samples, guided generations, interpolation, t-SNE, w-usage profile "
                f"and KL per dimension: [{args.name}_figures/]({args.name}_figures/).", ""]
    text += final
    across = seeds.across_seeds(runs)
    if across:
        text += ["## Across seeds", "", seeds.markdown(across, runs), ""]
    if args.notes:
        with open(args.notes) as f:
            text += [f.read()]
    with open(os.path.join(RESULTS, f"{args.name}.md"), "w") as f:
        f.write("\n".join(text))
    with open(os.path.join(RESULTS, f"{args.name}.json"), "w") as f:
        json.dump(dict(runs, **({ACROSS_SEEDS: across} if across else {})), f, indent=1)
    print(os.path.join(RESULTS, f"{args.name}.md"))


if __name__ == "__main__":
    main()
