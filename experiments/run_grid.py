"""Trains and evaluates a list of configs, one workdir each; resumable, skips finished runs.

  python experiments/run_grid.py --grid=mnist --steps=100000 --root=runs/grid
  python experiments/run_grid.py --grid=mvdm --steps=2000 --root=runs/cpu \
      --eval_args="--config.eval.num_fid_samples=0 --config.eval.num_test_images=2000"
  python experiments/run_grid.py --configs=mnist_cpu_uncond,mnist_cpu --jobs=2

Training counts as done when main.py wrote workdir/finished.json for the requested step count,
naming the evaluation of that step (main.py writes it only then); only then is the run evaluated
(`--mode=eval`), and it is finished when eval/metrics.json is for that step count. A
finished.json without its evaluation (older runs) is trained again: main.py then evaluates the
last step and writes it whole.
A training stopped by SIGINT / SIGTERM (main.py exits 130 / 143 after saving a checkpoint, or
dies of the signal while Python starts, before any step) is not evaluated; the grid then exits
with 130 / 143, and running it again resumes the run.
Runs live under --root (default $VDM_VAE_RUNS or ~/.cache/vdm_vae/runs, outside the work
tree); every run resumes from its last checkpoint. With --jobs=N, N runs go at once, each
pinned to its own core, so each run's CPU time is its own.
Afterwards `python experiments/collect.py --root=... --name=...` writes the table and plots.
"""

import argparse
import concurrent.futures
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VDMS = ("svdm", "tvdm", "mvdm")
ENCODERS = ("oepp", "oe", "se", "te", "ue", "none")
# main.py's exit codes after saving; negative: killed by the signal before its handler was set
# (while Python imports), when there is nothing new to save either.
INTERRUPTED = {130: signal.SIGINT, 143: signal.SIGTERM, -signal.SIGINT: signal.SIGINT,
               -signal.SIGTERM: signal.SIGTERM}


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


def training_finished(workdir: str, steps: int) -> bool:
    """True when main.py marked the training of `workdir` finished at `steps` steps, its last
    step evaluated (finished.json names the evaluation)."""
    path = os.path.join(workdir, "finished.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        finished = json.load(f)
    return finished.get("step") == steps and "evaluation" in finished


DEFAULT_ROOT = os.path.join(
    os.environ.get("VDM_VAE_RUNS", os.path.join(os.path.expanduser("~"), ".cache", "vdm_vae",
                                                "runs")))
_PRINT = threading.Lock()
_STOP = threading.Event()  # set by SIGINT/SIGTERM: runs save and stop, nothing new starts
_CHILDREN = set()
_STOPPED = {}  # name -> 128 + the signal that stopped its training


def _on_signal(signum, frame):
    del frame
    _STOP.set()
    for proc in list(_CHILDREN):
        proc.send_signal(signal.SIGINT)
    with _PRINT:
        print(f"=== signal {signum}: every run saves a checkpoint and stops", flush=True)


def run(cmd, log_path: str, prefix: str = "", cores=None) -> int:
    """Runs `cmd` (pinned to `cores` if given), streaming its output to the console, each line
    after `prefix`, and to log_path."""
    with _PRINT:
        print(prefix + "$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, preexec_fn=pin)
        _CHILDREN.add(proc)
        if _STOP.is_set():  # the signal came between the caller's check and the start
            proc.send_signal(signal.SIGINT)
        for line in proc.stdout:
            with _PRINT:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
            log.write(line)
            log.flush()
        code = proc.wait()
        _CHILDREN.discard(proc)
        return code


def train_and_eval(name: str, args, cores=None) -> bool:
    """Trains (resuming) and evaluates one config; True on success.

    A training stopped by a signal is recorded in _STOPPED and not evaluated.
    """
    workdir = os.path.join(args.root, name)
    steps = args.steps or _config_steps(name)
    if is_finished(workdir, steps):
        print(f"[{name}] finished already, skipped.", flush=True)
        return True
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, "grid.log")
    config = [f"--config={config_for_run(name)}", f"--workdir={workdir}"]
    if args.steps:
        config.append(f"--config.training.num_steps_train={args.steps}")
    config += shlex.split(args.train_args)
    prefix = f"[{name}] " if args.jobs > 1 else ""
    if _STOP.is_set():
        return False
    if not training_finished(workdir, steps):
        code = run([sys.executable, "main.py"] + config, log, prefix, cores)
        if code in INTERRUPTED or (code != 0 and _STOP.is_set()):
            # A child the stop reached while Python was still starting exits 1 (a traceback
            # of KeyboardInterrupt): stopped too, not failed.
            _STOPPED[name] = 128 + INTERRUPTED.get(code, signal.SIGINT)
            return False
        if code != 0 or not training_finished(workdir, steps):
            with _PRINT:
                print(f"[{name}] training failed (exit code {code}), not evaluated.", flush=True)
            return False
    if _STOP.is_set():
        return False
    return run([sys.executable, "main.py", "--mode=eval"] + config + shlex.split(args.eval_args),
               log, prefix, cores) == 0


def config_for_run(name: str) -> str:
    """The --config of run `name`: configs/<name>.py, or configs/<file>.py:<rest> for the
    longest <file> that `name` starts with (mnist_cpu_uncond_seed2 -> mnist_cpu.py:uncond_seed2).
    """
    parts = name.split("_")
    for cut in range(len(parts), 0, -1):
        path = os.path.join("configs", "_".join(parts[:cut]) + ".py")
        if os.path.exists(os.path.join(ROOT, path)):
            rest = "_".join(parts[cut:])
            return path + (f":{rest}" if rest else "")
    raise ValueError(f"run {name!r}: no config file configs/<prefix>.py for any prefix of it")


def _config_steps(name: str) -> int:
    """num_steps_train of run `name`'s config."""
    import importlib

    sys.path.insert(0, ROOT)
    path, _, arg = config_for_run(name).partition(":")
    module = importlib.import_module(path[:-3].replace(os.sep, "."))
    return module.get_config(arg or None).training.num_steps_train


def run_all(names, args) -> list:
    """Runs the configs, args.jobs at a time, each job pinned to its own core; the failed."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.jobs == 1 or len(cores) < args.jobs:
        return [n for n in names if not train_and_eval(n, args)]
    free = list(range(args.jobs))
    lock = threading.Lock()

    def one(name):
        with lock:
            slot = free.pop()
        try:
            share = cores[slot::args.jobs]
            return None if train_and_eval(name, args, set(share)) else name
        finally:
            with lock:
                free.append(slot)

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        return [n for n in pool.map(one, names) if n is not None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="mnist", help=f"one of {sorted(GRIDS)}")
    parser.add_argument("--configs", default="", help="comma-separated config names (overrides)")
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps per run (0: each config's own)")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="folder of the workdirs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one core each")
    parser.add_argument("--train_args", default="", help="extra main.py flags for training")
    parser.add_argument("--eval_args", default="", help="extra main.py flags for evaluation")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error(f"--steps={args.steps}: expected a positive int, or 0 for the config's")
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs}: expected a positive int")
    if args.configs:
        names = args.configs.split(",")
    elif args.grid in GRIDS:
        names = GRIDS[args.grid]
    else:
        parser.error(f"--grid={args.grid!r}: expected one of {sorted(GRIDS)}")
    for name in names:
        try:
            _config_steps(name)
        except ValueError as error:
            parser.error(str(error))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    start = time.time()
    print(f"=== {len(names)} runs under {args.root}, {args.jobs} at a time", flush=True)
    failed = [n for n in run_all(names, args) if n not in _STOPPED]
    print(f"=== done in {time.time() - start:.0f}s", flush=True)
    for name, code in _STOPPED.items():
        print(f"[{name}] training stopped by {signal.Signals(code - 128).name} with its last "
              "checkpoint saved: run the grid again to resume it.", flush=True)
    if _STOPPED:
        sys.exit(max(_STOPPED.values()))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
