"""Trains and evaluates a list of configs, one workdir each; resumable, skips finished runs.

  python experiments/run_grid.py --grid=mnist --steps=100000 --root=runs/grid
  python experiments/run_grid.py --grid=mvdm --steps=2000 --root=runs/cpu \
      --eval_args="--config.eval.num_fid_samples=0 --config.eval.num_test_images=2000"

A run is finished when its workdir holds eval/metrics.json for the requested step count.
Afterwards `python experiments/collect.py --root=... --name=...` writes the table and plots.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VDMS = ("svdm", "tvdm", "mvdm")
ENCODERS = ("oepp", "oe", "se", "te", "ue", "none")


def _name(vdm: str, encoder: str) -> str:
    return vdm if encoder == "none" else f"{vdm}_{encoder}"


GRIDS = {
    "mnist": [_name(v, e) for v in VDMS for e in ENCODERS],
    "cifar10": [f"{v}_{e}_cifar10" for v in ("mvdm", "tvdm") for e in ("oe", "ue")],
    "gpu_first": [_name(v, e) for v in ("tvdm", "svdm") for e in ("oe", "ue", "none")],
}
GRIDS.update({v: [_name(v, e) for e in ENCODERS] for v in VDMS})


def is_finished(workdir: str, steps: int) -> bool:
    path = os.path.join(workdir, "eval", "metrics.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return json.load(f).get("step") == steps


def run(cmd, log_path: str) -> int:
    """Runs `cmd`, streaming its output to the console and to log_path."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def train_and_eval(name: str, args) -> bool:
    """Trains (resuming) and evaluates one config; True on success."""
    workdir = os.path.join(args.root, name)
    if is_finished(workdir, args.steps):
        print(f"[{name}] finished already, skipped.", flush=True)
        return True
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, "grid.log")
    config = [f"--config=configs/{name}.py", f"--workdir={workdir}",
              f"--config.training.num_steps_train={args.steps}"] + shlex.split(args.train_args)
    if run([sys.executable, "main.py"] + config, log) != 0:
        return False
    return run([sys.executable, "main.py", "--mode=eval"] + config + shlex.split(args.eval_args),
               log) == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="mnist", help=f"one of {sorted(GRIDS)}")
    parser.add_argument("--configs", default="", help="comma-separated config names (overrides)")
    parser.add_argument("--steps", type=int, default=100_000, help="training steps per run")
    parser.add_argument("--root", default="runs/grid", help="folder of the workdirs")
    parser.add_argument("--train_args", default="", help="extra main.py flags for training")
    parser.add_argument("--eval_args", default="", help="extra main.py flags for evaluation")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps={args.steps}: expected a positive int")
    if args.configs:
        names = args.configs.split(",")
    elif args.grid in GRIDS:
        names = GRIDS[args.grid]
    else:
        parser.error(f"--grid={args.grid!r}: expected one of {sorted(GRIDS)}")
    missing = [n for n in names if not os.path.exists(os.path.join(ROOT, "configs", f"{n}.py"))]
    if missing:
        parser.error(f"no config file configs/{missing[0]}.py")
    start, failed = time.time(), []
    for i, name in enumerate(names):
        print(f"=== [{i + 1}/{len(names)}] {name} ({time.time() - start:.0f}s elapsed)",
              flush=True)
        if not train_and_eval(name, args):
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
