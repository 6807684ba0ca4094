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

from vdm_vae.evaluation import per_image
from vdm_vae.metrics import intervals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--json", help="also write the differences there")
    args = parser.parse_args(argv)
    try:
        diffs = per_image.paired_terms(per_image.load(args.run_a), per_image.load(args.run_b),
                                       args.run_a, args.run_b)
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
