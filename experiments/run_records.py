"""A finished run's record: the small files its results are made from, kept in the work tree.

A run's folder lives outside the work tree (under ~/.cache/vdm_vae/runs) and is lost with the
machine. Its record, committed under experiments/results/<name>_runs/<run>/, holds what the
tables, curves, paired differences and figures are made from, in the run folder's own layout:
the config, metrics.jsonl, the periodic sample grids, eval/metrics.json with the per-image
bounds, the learned prior's report and the FID reports. It leaves out the checkpoints, the
TensorBoard events and the samples themselves, so a restored run can be collected and paired
with, not trained further.

  python experiments/run_records.py save --root=R --records=experiments/results/mnist_cpu_runs \
      --runs='mnist_cpu*'
  python experiments/run_records.py restore --root=R --records=experiments/results/mnist_cpu_runs
"""

import argparse
import glob
import os
import shutil
import sys
from typing import List, Sequence

from vdm_vae.runtime import atomic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_curves  # noqa: E402

# The files of a run folder that its record keeps, as shell patterns relative to the folder:
# what backs a published number, and the final samples (not the grids along training, nor the
# other figures, which collect.py copies to results/<name>_figures/).
KEPT = ("config.json", "hparams.json", "finished.json", "metrics.jsonl",
        "eval/metrics.json", "eval/w_prior.json", "eval/samples.png", "eval/guided.png",
        "eval/bound_per_image.npz", "eval/w_prior_per_image.npz",
        "eval/fid_*/fid.json", "eval/fid_*/samples.png")
# A run is recorded once its evaluation is written.
EVALUATED = os.path.join("eval", "metrics.json")


def kept_files(workdir: str) -> List[str]:
    """The paths, relative to workdir, of the files its record keeps."""
    found = set()
    for pattern in KEPT:
        found.update(os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, pattern)))
    return sorted(found)


def _copy(source: str, target: str):
    """Copies a file so that target is never half written."""
    with atomic.replacing(target) as tmp:
        shutil.copyfile(source, tmp)


def _names(folder: str, patterns: Sequence[str]) -> List[str]:
    """The evaluated runs under folder whose names match one of the shell patterns."""
    return [os.path.basename(w) for w in plot_curves.workdirs(folder, EVALUATED, patterns)]


def save(root: str, records: str, patterns: Sequence[str] = ("*",)) -> List[str]:
    """Writes the record of every evaluated run under root that matches `patterns` to
    records/<run>/, replacing an older record of it; returns the runs saved."""
    names = _names(root, patterns)
    for name in names:
        workdir, record = os.path.join(root, name), os.path.join(records, name)
        files = kept_files(workdir)
        for stale in set(kept_files(record)) - set(files):
            os.remove(os.path.join(record, stale))
        for rel in files:
            _copy(os.path.join(workdir, rel), os.path.join(record, rel))
    return names


def restore(records: str, root: str, patterns: Sequence[str] = ("*",)) -> List[str]:
    """Copies each record matching `patterns` to root/<run> where root has no such folder (a
    run folder already there is never touched); returns the runs restored."""
    restored = []
    for name in _names(records, patterns):
        workdir = os.path.join(root, name)
        if os.path.exists(workdir):
            continue
        partial = workdir + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(os.path.join(records, name), partial)
        os.replace(partial, workdir)
        restored.append(name)
    return restored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("--root", required=True, help="the folder of the run folders")
    parser.add_argument("--records", required=True, help="the folder of the records")
    parser.add_argument("--runs", default="*", help="comma-separated shell patterns of run names")
    args = parser.parse_args(argv)
    patterns = args.runs.split(",")
    if args.action == "save":
        names = save(args.root, args.records, patterns)
        print(f"saved the records of {len(names)} runs to {args.records}: {', '.join(names)}")
    else:
        names = restore(args.records, args.root, patterns)
        print(f"restored {len(names)} finished runs from {args.records} to {args.root}"
              f"{': ' + ', '.join(names) if names else ''}")


if __name__ == "__main__":
    sys.exit(main())
