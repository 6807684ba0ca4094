"""Across training seeds: a configuration's runs <name>, <name>_seed2, <name>_seed3... pooled.

Every other interval of a collection covers the test images and the evaluation's draws, not
the training run. Here each configuration with two or more seeds gets, for each metric, the
mean over its seeds with the between-seed standard deviation, and for each paired difference
to the unconditional configuration (seed k's run against the unconditional run of seed k, on
the same test images and draws) a Student-t 95% interval over the per-seed differences. That
interval includes the variance between training runs; the within-run paired interval of each
seed stays in the per-run table. A target is judged on the across-seed interval.
"""

import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from vdm_vae.metrics import intervals

SEED_SUFFIX = re.compile(r"^(?P<config>.+?)(?:_seed(?P<seed>\d+))?$")
# The published runs have seed 1 and no suffix.
METRICS = ("bpd", "bpd_learned_prior", "kl_w_nats", "active_units", "mutual_info_nats",
           "probe_linear_acc", "fid", "fid_learned_prior")
# Paired differences to the unconditional configuration, as collect.py names them.
DIFFERENCES = ("bpd_minus_uncond", "bpd_learned_prior_minus_uncond", "bpd_diff_minus_uncond",
               "fid_minus_uncond", "fid_learned_prior_minus_uncond")
BOUND_TARGET = 0.01  # bits/dim: the bound within this of the unconditional configuration's
ACTIVE_UNITS_TARGET = 16
METHOD = ("mean over seeds +- between-seed standard deviation; differences to the "
          "unconditional configuration: seed k against its unconditional run of seed k (paired "
          "on the same test images and draws), then a Student-t 95% interval over the per-seed "
          "differences (n - 1 degrees of freedom), which includes the variance between "
          "training runs")


def configuration(name: str) -> Tuple[str, int]:
    """Run name -> (configuration, seed): mnist_cpu_mmd_seed3 -> (mnist_cpu_mmd, 3)."""
    match = SEED_SUFFIX.match(name)
    return match.group("config"), int(match.group("seed") or 1)


def _value(m: dict, key: str) -> Optional[float]:
    """A metric's number, or a paired difference's mean."""
    value = m.get(key)
    if isinstance(value, dict):
        value = value.get("mean")
    return None if value is None else float(value)


def across_seeds(runs: Dict[str, dict]) -> Dict[str, dict]:
    """{configuration: {"seeds", "runs", <metric>: {...}}} for configurations with >= 2 seeds.

    Each metric of METRICS and DIFFERENCES that every seed has gets {"mean", "sd", "n",
    "values"}; each difference also "ci_low", "ci_high" (Student t over the seeds).
    """
    groups: Dict[str, List[Tuple[int, str]]] = {}
    for name in runs:
        config, seed = configuration(name)
        groups.setdefault(config, []).append((seed, name))
    summary = {}
    for config, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        members.sort()
        entry = {"seeds": [s for s, _ in members], "runs": [n for _, n in members]}
        for key in METRICS + DIFFERENCES:
            values = [_value(runs[n], key) for _, n in members]
            if any(v is None for v in values):
                continue
            values = np.asarray(values)
            stats = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                     "n": len(values), "values": [float(v) for v in values]}
            if key in DIFFERENCES:
                interval = intervals.mean_interval(values)
                stats.update(ci_low=interval["ci_low"], ci_high=interval["ci_high"])
            entry[key] = stats
        summary[config] = entry
    return summary


def verdicts(summary: Dict[str, dict], runs: Dict[str, dict]) -> Dict[str, Dict[str, str]]:
    """Each target, per configuration with seeds, judged on the across-seed intervals."""
    out = {}
    for config, entry in summary.items():
        if "uncond" in config.split("_"):
            continue
        checks = {}
        for key, label in (("bpd_minus_uncond", "bound within 0.01, w ~ N(0, I)"),
                           ("bpd_learned_prior_minus_uncond", "bound within 0.01, fitted prior")):
            if key in entry:
                high = entry[key]["ci_high"]
                checks[label] = (f"met (upper end {high:+.4f} < {BOUND_TARGET})"
                                 if high < BOUND_TARGET else
                                 f"not shown (upper end {high:+.4f} >= {BOUND_TARGET})")
        for key, label in (("fid_minus_uncond", "FID no worse, w ~ N(0, I)"),
                           ("fid_learned_prior_minus_uncond", "FID no worse, fitted prior")):
            if key in entry:
                low, high = entry[key]["ci_low"], entry[key]["ci_high"]
                checks[label] = ("better" if high < 0 else "worse" if low > 0 else
                                 "within the spread (interval holds 0)")
        units = [runs[n].get("active_units") for n in entry["runs"]]
        kls = [runs[n].get("kl_w_nats") for n in entry["runs"]]
        if None not in units and None not in kls:
            met = all(k > 0 for k in kls) and min(units) >= ACTIVE_UNITS_TARGET
            checks["KL > 0 with >= 16 active units"] = (
                f"{'met' if met else 'not met'} in every seed (active units {min(units)}-"
                f"{max(units)})")
        out[config] = checks
    return out


def _cell(stats: Optional[dict], difference: bool) -> str:
    if stats is None:
        return "-"
    digits = 1 if abs(stats["mean"]) >= 5 else 4
    text = f"{stats['mean']:.{digits}f} +- {stats['sd']:.{digits}f}"
    if difference:
        text += f" [{stats['ci_low']:+.{digits}f}, {stats['ci_high']:+.{digits}f}]"
    return text


def markdown(summary: Dict[str, dict], runs: Dict[str, dict]) -> str:
    """The across-seed table, its method and the verdict on each target."""
    if not summary:
        return ""
    head = ["configuration", "seeds"] + list(METRICS) + list(DIFFERENCES)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, entry in summary.items():
        cells = [config, ",".join(map(str, entry["seeds"]))]
        cells += [_cell(entry.get(k), False) for k in METRICS]
        cells += [_cell(entry.get(k), True) for k in DIFFERENCES]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Across seeds: {METHOD}. The within-run paired interval of each seed is in "
              "the table above.", ""]
    for config, checks in verdicts(summary, runs).items():
        lines.append(f"- {config}: " + "; ".join(f"{k}: {v}" for k, v in checks.items()))
    return "\n".join(lines)

