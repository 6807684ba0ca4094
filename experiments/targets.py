"""The protocol's targets in one figure: what each encoder run trades, and what budget buys.

`plot_targets(runs, root, path)` draws two panels from collect.py's runs (each run's
eval/metrics.json with the paired differences collect adds):

  - left, the two targets against each other: the linear probe on mu(x) (95% Wilson interval)
    against the bound's paired difference to the unconditional run of the same schedule (95%
    interval), with w from N(0, I) (filled) and, where a prior was fitted, from the learned
    prior (open, joined to the first by a dotted line); the shaded corner is where both
    targets hold (probe >= 0.97, difference <= 0.01 bits/dim);
  - right, the probe against the budget: each run's full linear probe against the CPU hours
    it had used at that step (all cores, evaluations included, from its metrics.jsonl), at its
    final evaluation and, from `matched_dir`, at the steps where
    `experiments/probe_checkpoint.py` fitted the same probe to a kept checkpoint; the dashed
    line is the protocol's budget of about 2 hours of a 2-core machine.
"""

import glob
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vdm_vae.training.writers import read_metrics  # noqa: E402

PROBE_TARGET = 0.97  # linear probe on mu(x), MNIST test
BOUND_TARGET = 0.01  # bits/dim above the unconditional run's bound
BUDGET_CPU_HOURS = 4.0  # about 2 hours of a 2-core machine per run
# the keys of the paired differences that collect.py adds to each run's metrics
UNCOND_DIFF = "bpd_minus_uncond"
LEARNED_DIFF = "bpd_learned_prior_minus_uncond"


def short_name(name: str) -> str:
    """The run's name without the protocol's prefix: 'mnist_cpu_c30' -> 'c30'."""
    return re.sub(r"^mnist_cpu_?", "", name) or "main"


def cpu_hours_at(rows: List[dict], step: int) -> Optional[float]:
    """CPU hours a run had used by its evaluation at `step` (None if it logged none there)."""
    hours = [r["eval/cpu_seconds"] / 3600.0 for r in rows
             if r.get("step") == step and "eval/cpu_seconds" in r]
    return hours[-1] if hours else None


def probe_points(runs: Dict[str, dict], root: str,
                 matched_dir: Optional[str] = None) -> Dict[str, List[Tuple[float, float, float,
                                                                          float]]]:
    """name -> [(cpu_hours, accuracy, ci_low, ci_high)] by step: the full linear probe of each
    run at its final evaluation and at its matched-probe steps, where root/<name>/metrics.jsonl
    says what CPU time the run had used there."""
    points = {}
    for name, m in runs.items():
        workdir = os.path.join(root, name)
        if m.get("probe_linear_acc") is None or not os.path.exists(
                os.path.join(workdir, "metrics.jsonl")):
            continue
        rows = read_metrics(workdir)
        found = {m.get("step"): (m["probe_linear_acc"], *m["probe_linear_acc_ci"])}
        for path in glob.glob(os.path.join(matched_dir or "", f"{name}_step*.json")):
            if not re.fullmatch(rf"{re.escape(name)}_step\d+\.json", os.path.basename(path)):
                continue  # not <name>_step<digits>.json (e.g. a renamed copy)
            with open(path) as f:
                probe = json.load(f)
            found.setdefault(probe["step"], (probe["probe_linear_acc_trained"],
                                             *probe["probe_linear_acc_trained_ci"]))
        line = []
        for step in sorted(s for s in found if s is not None):
            hours = cpu_hours_at(rows, step)
            if hours is not None:
                line.append((hours,) + tuple(found[step]))
        if line:
            points[name] = line
    return points


def _errorbar(ax, x, y, color, filled: bool, marker: str = "o"):
    """One point with its intervals: x and y are (value, low, high)."""
    ax.errorbar(x[0], y[0], xerr=[[x[0] - x[1]], [x[2] - x[0]]], yerr=[[y[0] - y[1]],
                [y[2] - y[0]]], fmt=marker, color=color, mfc=color if filled else "white",
                ms=5, capsize=2, lw=0.8)


def _inside(value: float, window) -> bool:
    return window[0] <= value <= window[1]


def _draw_tradeoff(ax, probed: Dict[str, dict], color_of: dict, probe_window,
                   bound_window) -> List[str]:
    """The left panel; returns what falls outside its window, as text."""
    ax.fill_between([bound_window[0], BOUND_TARGET], PROBE_TARGET, probe_window[1],
                    color="C2", alpha=0.15, lw=0, label="both targets")
    outside = []
    for name, m in sorted(probed.items()):
        color, label = color_of[name], short_name(name)
        y = (m["probe_linear_acc"], *m["probe_linear_acc_ci"])
        xs = [(d["mean"], d["ci_low"], d["ci_high"]) for d in (m.get(UNCOND_DIFF),
                                                             m.get(LEARNED_DIFF)) if d]
        shown = [x for x in xs if _inside(x[0], bound_window) and _inside(y[0], probe_window)]
        outside += [f"{label}{' (learned prior)' if k else ''}: difference {x[0]:+.3f}, "
                    f"probe {y[0]:.3f}"
                    for k, x in enumerate(xs) if x not in shown]
        for k, x in enumerate(xs):
            if x in shown:
                _errorbar(ax, x, y, color, filled=k == 0, marker="os"[k])
        if len(shown) == 2:
            ax.plot([shown[0][0], shown[1][0]], [y[0], y[0]], ":", color=color, lw=0.8)
        if shown:
            ax.annotate(label, (shown[0][0], y[0]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=color)
    ax.axhline(PROBE_TARGET, color="k", lw=0.6, ls="--")
    ax.axvline(BOUND_TARGET, color="k", lw=0.6, ls="--")
    ax.set_xlim(*bound_window)
    ax.set_ylim(*probe_window)
    ax.set_xlabel("bound - the unconditional run's, paired (bits/dim)\n"
                  "filled: w from N(0, I); open: from the learned prior")
    ax.set_title("The two targets")
    ax.legend(loc="lower right", fontsize=8)
    return outside


def _draw_budget(ax, points: dict, color_of: dict, probe_window) -> List[str]:
    """The right panel; returns what falls outside its window, as text."""
    outside = []
    for name, line in sorted(points.items()):
        color, label = color_of[name], short_name(name)
        shown = [p for p in line if _inside(p[1], probe_window)]
        outside += [f"{label}: probe {p[1]:.3f} at {p[0]:.1f} h" for p in line
                    if p not in shown]
        if not shown:
            continue
        ax.plot([p[0] for p in shown], [p[1] for p in shown], "-", color=color, lw=0.8)
        for hours, acc, low, high in shown:
            ax.errorbar(hours, acc, yerr=[[acc - low], [high - acc]], fmt="o", color=color,
                        ms=4, capsize=2, lw=0.8)
        ax.annotate(label, shown[-1][:2], textcoords="offset points", xytext=(4, -3),
                    fontsize=7, color=color)
    ax.axhline(PROBE_TARGET, color="k", lw=0.6, ls="--")
    ax.axvline(BUDGET_CPU_HOURS, color="k", lw=0.6, ls=":")
    ax.set_ylim(*probe_window)
    ax.text(BUDGET_CPU_HOURS, probe_window[0], " budget", fontsize=8, va="bottom")
    ax.set_xlabel("CPU hours used (all cores, evaluations included)")
    ax.set_title("The probe against the budget (full probe at kept steps)")
    if not points:
        ax.text(0.5, 0.5, "no run's CPU time here", transform=ax.transAxes,
                ha="center", va="center")
    return outside


def plot_targets(runs: Dict[str, dict], root: str, path: str,
                 matched_dir: Optional[str] = None, probe_window=(0.85, 0.98),
                 bound_window=(-0.005, 0.1)) -> bool:
    """Draws the two panels to `path`; False (and no file) if no run has a probe. Both panels
    show the probe in `probe_window` and the left one the bound's difference in `bound_window`;
    what falls outside is listed under the panel, not drawn."""
    probed = {n: m for n, m in runs.items() if m.get("probe_linear_acc") is not None}
    if not probed:
        return False
    colors = plt.get_cmap("tab20")
    color_of = {name: colors(i % 20) for i, name in enumerate(sorted(probed))}
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5))
    outside = [_draw_tradeoff(axes[0], probed, color_of, probe_window, bound_window),
               _draw_budget(axes[1], probe_points(probed, root, matched_dir), color_of,
                            probe_window)]
    for ax, missing in zip(axes, outside):
        ax.set_ylabel("linear probe on mu(x), MNIST test")
        if missing:
            ax.text(0.0, -0.2, "outside the window:\n" + "\n".join(missing),
                    transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True
