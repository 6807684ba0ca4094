"""The paired difference of two evaluated runs' bounds, term by term, with its 95% interval.

Reads each run's eval/bound_per_image.npz (`main.py --mode=eval`): runs evaluated with the same
seed and draws on the same test images share their draws of t and noise, so image by image
their bounds are paired. Any two runs, not only a run and its unconditional baseline
(`experiments/collect.py`): e.g. two runs that differ in a seed or a weight that left w unused.

  python experiments/pair_bounds.py RUN_A RUN_B [--json=OUT.json]   # RUN_A minus RUN_B
"""

import argparse
import json
import os
import sys
from typing import Dict

import numpy as np

from vdm_vae.metrics import intervals

TERMS = ("bpd", "bpd_recon", "bpd_prior", "bpd_diff", "bpd_kl_w")


def per_image(workdir: str) -> Dict[str, np.ndarray]:
    """The arrays of workdir/eval/bound_per_image.npz (seed, draws, a [N] array per term)."""
    path = os.path.join(workdir, "eval", "bound_per_image.npz")
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: evaluate the run first "
                         "(main.py --mode=eval, or experiments/run_records.py restore).")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def paired_terms(a_dir: str, b_dir: str) -> Dict[str, dict]:
    """Per term of both runs, the paired difference a - b over the images."""
    a, b = per_image(a_dir), per_image(b_dir)
    for key in ("seed", "draws"):
        if int(a[key]) != int(b[key]):
            raise ValueError(f"{key} differs ({int(a[key])} in {a_dir}, {int(b[key])} in "
                             f"{b_dir}): the bounds are not paired; evaluate both alike.")
    if a["bpd"].shape != b["bpd"].shape:
        raise ValueError(f"the runs were evaluated on {a['bpd'].shape[0]} and "
                         f"{b['bpd'].shape[0]} test images: the bounds are not paired.")
    return {t: intervals.paired_difference(a[t], b[t]) for t in TERMS if t in a and t in b}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--json", help="also write the differences there")
    args = parser.parse_args(argv)
    try:
        diffs = paired_terms(args.run_a, args.run_b)
    except ValueError as error:
        sys.exit(f"error: {error}")
    names = [os.path.basename(os.path.normpath(d)) for d in (args.run_a, args.run_b)]
    print(f"| term | {names[0]} - {names[1]} [95% CI] | se paired / unpaired |\n|---|---|---|")
    for term, d in diffs.items():
        print(f"| {term} | {intervals.format_interval(d)} | "
              f"{d['stderr']:.4f} / {d['unpaired_stderr']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"a": args.run_a, "b": args.run_b, "a_minus_b": diffs}, f, indent=1)


if __name__ == "__main__":
    main()
