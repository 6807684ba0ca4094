"""Learning curves of runs in progress or finished, from each workdir's metrics.jsonl.

`progress(root)` gives, per run, the step reached, its CPU time and its last periodic evaluation;
`plot_curves` draws each metric of every run against CPU hours on one figure, `plot_gaps` each
run's paired gap to its unconditional run along training, and `plot_sample_strips` lays each
run's sample grids side by side, oldest first.
"""

import fnmatch
import glob
import os
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vdm_vae.training.writers import read_metrics  # noqa: E402

CURVE_METRICS = ("eval/bpd", "eval/bpd_diff", "eval/kl_w_nats", "eval/active_units",
                 "eval/probe_linear_acc")


def series(rows: List[dict], key: str):
    """(cpu_hours, values) of `key` over the rows that have both, one point per step."""
    points = {}
    for row in rows:
        if key in row and "eval/cpu_seconds" in row:
            points[row["step"]] = (row["eval/cpu_seconds"] / 3600.0, row[key])
    pts = [points[s] for s in sorted(points)]
    return [p[0] for p in pts], [p[1] for p in pts]


def workdirs(root: str, holding: str, patterns: Sequence[str] = ("*",)) -> List[str]:
    """The run folders root/<name> that hold the file `holding` (e.g. "metrics.jsonl") and whose
    name matches one of the shell patterns (e.g. 'pilot_*'), sorted; a symlinked folder is an
    alias of another and is skipped."""
    found = []
    for path in sorted(glob.glob(os.path.join(root, "*", holding))):
        workdir = path[:-len(holding)].rstrip(os.sep)
        name = os.path.basename(workdir)
        if not os.path.islink(workdir) and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            found.append(workdir)
    return found


def progress(root: str, patterns: Sequence[str] = ("*",)) -> Dict[str, dict]:
    """name -> {'step', 'cpu_hours', 'eval_step', and the last eval/... values} per workdir
    whose name matches `patterns` (a symlinked workdir is an alias of another and is skipped)."""
    runs = {}
    for workdir in workdirs(root, "metrics.jsonl", patterns):
        rows = read_metrics(workdir)
        train = [r for r in rows if "train/cpu_seconds" in r]
        evals = [r for r in rows if "eval/bpd" in r]
        entry = {"step": max((r["step"] for r in rows), default=0),
                 "cpu_hours": max((r.get("train/cpu_seconds", r.get("eval/cpu_seconds", 0.0))
                                   for r in train + evals), default=0.0) / 3600.0}
        if evals:
            last = evals[-1]
            entry["eval_step"] = last["step"]
            entry.update({k.split("/", 1)[1]: v for k, v in last.items() if k in CURVE_METRICS})
        runs[os.path.basename(workdir)] = entry
    return runs


def progress_table(runs: Dict[str, dict]) -> str:
    """Markdown: one row per run, the step reached, CPU hours and the last eval's metrics."""
    cols = ["step", "cpu_hours", "eval_step"] + [k.split("/", 1)[1] for k in CURVE_METRICS]
    lines = ["| run | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, entry in runs.items():
        cells = []
        for c in cols:
            v = entry.get(c)
            cells.append("-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(root: str, names, path: str):
    """One panel per metric of CURVE_METRICS, every run a line against CPU hours."""
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.6))
    for i, name in enumerate(names):
        rows = read_metrics(os.path.join(root, name))
        for ax, key in zip(axes, CURVE_METRICS):
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, marker=".", color=f"C{i}", label=name)
    for ax, key in zip(axes, CURVE_METRICS):
        ax.set_title(key.split("/", 1)[1])
        ax.set_xlabel("CPU hours (all cores)")
        if key == "eval/bpd":
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


GAP_METRICS = ("eval/bpd", "eval/bpd_diff")


def _by_step(rows: List[dict], key: str) -> Dict[int, float]:
    return {row["step"]: row[key] for row in rows if key in row}


def gaps(root: str, run: str, base: str) -> Dict[str, tuple]:
    """key -> (steps, run - base at those steps) for each key of GAP_METRICS, at the steps
    both runs evaluated (the periodic evaluations use the same images and draws, so the gaps
    are paired)."""
    rows, base_rows = (read_metrics(os.path.join(root, n)) for n in (run, base))
    out = {}
    for key in GAP_METRICS:
        a, b = _by_step(rows, key), _by_step(base_rows, key)
        steps = sorted(set(a) & set(b))
        out[key] = (steps, [a[s] - b[s] for s in steps])
    return out


def plot_gaps(root: str, pairs, path: str, target: float = 0.01) -> bool:
    """Each (run, baseline) pair's `gaps` against the step, a panel per metric, with a dashed
    line at +-target on the bound's panel. Returns False (and draws nothing) if no pair has
    a common step."""
    drawn = [(f"{run} - {base}", gaps(root, run, base)) for run, base in pairs]
    drawn = [(label, g) for label, g in drawn if g[GAP_METRICS[0]][0]]
    if not drawn:
        return False
    fig, axes = plt.subplots(1, len(GAP_METRICS), figsize=(5 * len(GAP_METRICS), 3.6))
    for i, (label, g) in enumerate(drawn):
        for ax, key in zip(axes, GAP_METRICS):
            ax.plot(*g[key], marker=".", color=f"C{i}", label=label)
    for ax, key in zip(axes, GAP_METRICS):
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_title(f"{key.split('/', 1)[1]}: run - unconditional run (paired)")
        ax.set_xlabel("step")
        ax.set_ylabel("bits/dim")
    for sign in (1, -1):
        axes[0].axhline(sign * target, color="gray", ls="--", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_sample_strips(root: str, names, path: str, max_columns: int = 6):
    """A row per run of its periodic sample grids (images/samples_<step>.png), evenly spaced
    over its training, each titled with its step and CPU hours."""
    rows = []
    for name in names:
        grids = sorted(glob.glob(os.path.join(root, name, "images", "samples_*.png")))
        if grids:
            pick = np.unique(np.linspace(0, len(grids) - 1, min(max_columns, len(grids)))
                             .round().astype(int))
            rows.append((name, [grids[j] for j in pick]))
    if not rows:
        return False
    columns = max(len(g) for _, g in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.4 * len(rows)),
                             squeeze=False)
    for r, (name, grids) in enumerate(rows):
        cpu = dict((s, c) for s, c in _eval_cpu(os.path.join(root, name)))
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(grids):
                step = int(os.path.basename(grids[c]).split("_")[-1].split(".")[0])
                ax.imshow(plt.imread(grids[c]), cmap="gray")
                hours = f", {cpu[step]:.2f} CPU h" if step in cpu else ""
                ax.set_title(f"{name}\nstep {step}{hours}" if c == 0 else f"step {step}{hours}",
                             fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _eval_cpu(workdir: str):
    for row in read_metrics(workdir):
        if "eval/cpu_seconds" in row:
            yield row["step"], row["eval/cpu_seconds"] / 3600.0
