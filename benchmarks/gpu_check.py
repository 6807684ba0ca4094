"""The GPU check in one command of at most 8 minutes: our train step and the study's taking
turns, main.py's training with and without the study's evaluation cadence, sampling, the
benchmark, and projections of the study's runs.

    OUT=/tmp/gpu benchmarks/gpu_check.sh            # on a GPU machine; docs/speed.md
    OUT=/tmp/gpu benchmarks/gpu_check.sh --quick    # on a CPU, tiny sizes: checks the script
    python benchmarks/gpu_check.py --prepare --study=/tmp/VAE-VDM  # once, with network

--prepare fills the git-ignored .gpu/ (carry [".gpu"] to the device): wheels the device lacks
(ml_collections, clu, and for the study's code diffusers and ema-pytorch; its torch,
huggingface-hub and safetensors are there), MNIST as a compressed .npz, and with --study the
src/ of a checkout of the study's repository (diegogcerdas/VAE-VDM; never committed here) as
.gpu/study/src. The check finds the study's code at --study, $VDM_VAE_STUDY or .gpu/study;
without it, or without torch, diffusers or ema_pytorch, the study's side is reported as
skipped, not failed.

Phases, in this order, most useful first; each runs for at most its time limit (--limit
NAME=SECONDS) and what is left of --budget-s (470 s: with the wheels' install the device's call
ends within 480 s), and is skipped when less than the least it needs is left:
1. machine: nvidia-smi, python, jax, jaxlib, flax and jax's devices;
2. turns (190 s, least 60): our float32 train step and the study's PyTorch step at batch 64
   for MVDM, TVDM and SVDM, no encoder and OE, taking turns in rounds, and our SVDM + OE step
   at batch 64 and 256 with 1, 4 and 16 optimiser steps per call (benchmarks/turns.py): 17
   workers compile at once (up to 140 s), then up to 10 rounds of 8-step blocks, then the
   study's reverse step and evaluation forward pass. Beside the compiles, main.py's "warm" run
   fills the compilation cache of the two runs below;
3. train_eval (150 s, least 60): main.py with configs/svdm_oe.py on real MNIST, an evaluation
   and a checkpoint every 1,000 steps (the study's cadence), to step 2,100
   (benchmarks/main_runs.py);
4. train_no_eval (70 s, least 40): the same with checkpoints only, stopped by SIGTERM;
5. sample (60 s, least 25): 1,000 images at T = 1000 from train_eval's checkpoint in 4 calls of
   250 to one compiled sampler, the rate of the calls done in time (benchmarks/gpu_sample.py);
6. bench (250 s, least 150: on the GPU only with a larger budget): `python benchmarks/bench.py`
   for SVDM + OE in float32 and bfloat16, with the reverse step and MFU against --peak-tflops
   989.4 (NVIDIA's dense bfloat16 figure for the H100 and H200 SXM).
--quick: the smoke sizes, the study's step at tiny widths, one pair row (SVDM + OE, batch 8)
and one substeps row (batch 16, 2 per call), 6 rounds of 1 step; limits of 600-1,500 s.
Then the projections of the study's 100k-step SVDM + OE run and of its 18-run grid, for both
codes (benchmarks/projections.py). Writes to $OUT (or --out): gpu_check.json (everything),
gpu_check.md (the summary), logs.txt (every phase's log), samples.png and, when the benchmark
ran, bench.md. A phase that fails is reported as such and the others still run; the exit
status is then 1. Without --quick every process runs with JAX_PLATFORMS=cuda (unless set).
"""

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `python benchmarks/gpu_check.py`: this checkout's packages
from benchmarks import gpu_report, main_runs, projections, turns  # noqa: E402

PEAK_TFLOPS = 989.4  # H100 / H200 SXM, dense bfloat16 (NVIDIA's datasheet)
PREPARED = os.path.join(ROOT, ".gpu")
# Missing on the device; their dependencies are there. diffusers 0.42.1 needs
# huggingface-hub >= 1.32 (the device has 1.33) and imports importlib.metadata on Python 3.12
# (not the importlib_metadata package); ema-pytorch 0.1.4 is the study's requirements.txt pin.
WHEELS = ("ml_collections==1.1.0", "clu==0.0.12", "diffusers==0.42.1", "ema-pytorch==0.1.4")
MNIST_FILE = os.path.join(PREPARED, "mnist.npz")
STUDY_DIR = os.path.join(PREPARED, "study")
# name: (time limit on the GPU, with --quick, least seconds worth starting it), in run order.
PHASES = {"turns": (190, 1500, 60), "train_eval": (150, 1500, 60),
          "train_no_eval": (70, 1500, 40), "sample": (60, 600, 25), "bench": (250, 1500, 150)}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for the results "
                   "(default: $OUT)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, about a minute on a CPU")
    p.add_argument("--data", default=None, help=f"MNIST .npz (default {MNIST_FILE}; "
                   "--quick: synthetic images unless given)")
    p.add_argument("--study", default=None, help="root of a checkout of diegogcerdas/VAE-VDM "
                   f"(default $VDM_VAE_STUDY, else {STUDY_DIR}); with --prepare, the checkout "
                   "whose src/ is copied there")
    # The time limits are for the GPU; --quick checks that the phases run, however loaded
    # the CPU, and bounds them only loosely.
    p.add_argument("--budget-s", type=float, default=None, help="wall time of the whole check "
                   "(470; --quick: 3600)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=SECONDS",
                   help=f"a phase's time limit, NAME one of {', '.join(PHASES)}")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    p.add_argument("--prepare", action="store_true", help=f"download {', '.join(WHEELS)} "
                   f"into .gpu/whl, write {MNIST_FILE} from the MNIST cache and, with --study, "
                   f"copy the study's src/ to {STUDY_DIR}, then exit")
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 3600.0 if args.quick else 470.0
    args.limits = {name: float(limits[args.quick]) for name, limits in PHASES.items()}
    for item in args.limit:
        name, _, seconds = item.partition("=")
        if name not in PHASES or not seconds.replace(".", "", 1).isdigit():
            p.error(f"--limit {item!r}: expected NAME=SECONDS with NAME one of "
                    f"{', '.join(PHASES)}")
        args.limits[name] = float(seconds)
    return args


def prepare(study: Optional[str]):
    """Fills .gpu/ (git-ignored): the wheels the device lacks, MNIST as a compressed .npz and,
    given a checkout of the study's repository, a copy of its src/."""
    import numpy as np

    from vdm_vae.data.mnist import ARRAY_KEYS, load_mnist

    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform",
                    "manylinux_2_17_x86_64", "-d", os.path.join(PREPARED, "whl"), *WHEELS],
                   check=True)
    arrays = load_mnist()
    np.savez_compressed(MNIST_FILE, **{k: arrays[k] for k in ARRAY_KEYS})
    if study:
        if not os.path.isdir(os.path.join(study, "src", "models")):
            raise SystemExit(f"--study {study!r}: expected the root of a checkout of "
                             "diegogcerdas/VAE-VDM, with its model code in src/models/.")
        shutil.rmtree(STUDY_DIR, ignore_errors=True)
        shutil.copytree(os.path.join(study, "src"), os.path.join(STUDY_DIR, "src"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        print(f"no --study: {STUDY_DIR} left as it is", flush=True)
    for folder, _, files in sorted(os.walk(PREPARED)):
        for name in sorted(files):
            print(os.path.join(folder, name), os.path.getsize(os.path.join(folder, name)))


def run_for(argv: List[str], seconds: float, log_path: str, grace_s: float = 60.0,
            env: Optional[dict] = None) -> dict:
    """Runs argv with output to log_path; after `seconds` sends SIGTERM, after `grace_s` more
    SIGKILL. Returns {"returncode", "wall_s", "stopped": None, "SIGTERM" or "SIGKILL"}."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        stopped = None
        try:
            proc.wait(timeout=max(seconds, 1.0))
        except subprocess.TimeoutExpired:
            stopped = "SIGTERM"
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                stopped = "SIGKILL"
                proc.kill()
                proc.wait()
    return {"returncode": proc.returncode, "wall_s": time.monotonic() - start,
            "stopped": stopped}


def machine() -> dict:
    """nvidia-smi's GPU, driver and memory (where there is one) and the benchmark's info."""
    info = {}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=60)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        info["nvidia_smi"] = f"not available ({error.__class__.__name__})"
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--platform-info"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"platform"')]
    info.update(json.loads(lines[-1])["platform"] if lines else {"error": out.stderr[-2000:]})
    return info


def find_study(args) -> dict:
    """{"path": the study's checkout} where it and torch, diffusers and ema_pytorch are there,
    else {"path", "skipped": why}."""
    path = args.study or os.environ.get("VDM_VAE_STUDY") or STUDY_DIR
    if not os.path.isdir(os.path.join(path, "src", "models")):
        return {"path": path, "skipped": f"no checkout of the study's code at {path} (python "
                "benchmarks/gpu_check.py --prepare --study=PATH, or $VDM_VAE_STUDY)"}
    missing = [m for m in ("torch", "diffusers", "ema_pytorch")
               if importlib.util.find_spec(m) is None]
    if missing:
        return {"path": path, "skipped": f"missing {', '.join(missing)}"}
    return {"path": path}


def turns_phase(args, report: dict, seconds: float, work: dict) -> dict:
    """benchmarks/turns.py's rows, with main.py's warm run beside the compiles."""
    warm = {}

    def finish_warm(ready_by: float):
        try:  # stopped if still compiling: the rounds need the device alone
            warm["proc"].wait(timeout=max(ready_by - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            warm["proc"].kill()
            warm["proc"].wait()
        report["warm"] = {"returncode": warm["proc"].returncode,
                          "wall_s": time.monotonic() - warm["start"]}

    env = dict(work["env"], XLA_PYTHON_CLIENT_PREALLOCATE="false")  # the GPU is shared
    warm["start"] = time.monotonic()
    with open(os.path.join(work["logs"], "warm.log"), "w") as log:
        warm["proc"] = subprocess.Popen(main_runs.argv("warm", args.quick, work["warm"],
                                                       data_file(args)),
                                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    rounds, steps, ready_s = (6, 1, seconds) if args.quick else (10, 8, seconds - 50)
    study = report["study"].get("path") if "skipped" not in report["study"] else None
    try:
        return turns.run(args.quick, study, seconds, work["logs"], rounds, steps, ready_s,
                         finish_warm)
    finally:
        if warm["proc"].poll() is None:  # turns.run ended before the rounds
            warm["proc"].kill()
            warm["proc"].wait()


def data_file(args) -> Optional[str]:
    """main.py's MNIST .npz: --data, else .gpu/mnist.npz (--quick: None, synthetic images)."""
    return args.data or (None if args.quick else MNIST_FILE)


def train(args, run: str, seconds: float, work: dict) -> dict:
    """main.py's `run` (benchmarks/main_runs.py) for `seconds` at most, and its metrics."""
    data = data_file(args)
    argv = main_runs.argv(run, args.quick, work[run], data)
    result = run_for(argv, seconds, os.path.join(work["logs"], f"{run}.log"), env=work["env"])
    result.update(command=" ".join(argv[1:]), data=data or "synthetic")
    result.update(main_runs.summary(os.path.join(work[run], "metrics.jsonl"),
                                    main_runs.every(args.quick)))
    return result


def sample(args, seconds: float, work: dict) -> dict:
    """benchmarks/gpu_sample.py on train_eval's checkpoint (train_no_eval's if it has none)."""
    has = [w for w in (work["eval"], work["no_eval"]) if os.path.isdir(
        os.path.join(w, "checkpoints"))]
    n, steps, chunks = (16, 10, 2) if args.quick else (1000, 1000, 4)
    argv = [sys.executable, "-m", "benchmarks.gpu_sample", (has or [work["eval"]])[0],
            "--out", args.out, "--samples", str(n), "--steps", str(steps), "--chunks",
            str(chunks)]
    log = os.path.join(work["logs"], "sample.log")
    result = run_for(argv, seconds, log, grace_s=5.0, env=work["env"])
    with open(log) as f:
        lines = [ln for ln in f if ln.startswith("{")]
    return dict(result, **(json.loads(lines[-1]) if lines else {"images": n, "T": steps}))


def bench(args, seconds: float, work: dict) -> dict:
    """The benchmark's rows (JSON lines of its output) and bench.md in args.out."""
    argv = [sys.executable, "-m", "benchmarks.bench", "--batch", "64", "--peak-tflops",
            str(args.peak_tflops), "--time-limit-s", str(max(seconds - 20, 1)),
            "--out", os.path.join(args.out, "bench.md")]
    if args.quick:
        argv += ["--smoke", "--sizes", "mvdm", "--encoders", "oe", "--dtypes", "float32",
                 "--no-calibrate", "--repeats", "1", "--sample-steps", "2",
                 "--sample-repeats", "1"]
    else:  # float32's step is in the turns too; this adds bfloat16, the reverse step and MFU
        argv += ["--sizes", "svdm", "--encoders", "oe", "--dtypes", "float32,bfloat16",
                 "--jobs", "2", "--repeats", "10", "--sample-steps", "100",
                 "--sample-repeats", "2"]
    log = os.path.join(work["logs"], "bench.log")
    result = run_for(argv, seconds, log)
    with open(log) as f:
        rows = [json.loads(ln) for ln in f if ln.startswith("{") and '"platform"' not in ln]
    return dict(result, command="python " + " ".join(argv[1:]), rows=rows)


def merge_logs(logs: str, out: str):
    """logs.txt in `out`: every log of the check under a heading, the last 2 MB of each."""
    with open(os.path.join(out, "logs.txt"), "w") as merged:
        for name in sorted(os.listdir(logs), key=lambda n: os.path.getmtime(
                os.path.join(logs, n))):
            with open(os.path.join(logs, name), errors="replace") as f:
                text = f.read()
            merged.write(f"===== {name} =====\n{text[-2_000_000:]}\n")


def failed(name: str, result: dict) -> bool:
    """Whether a phase failed: a worker or a command that ended in error (a main.py run stopped
    by the check's SIGTERM saves and exits with 143: not a failure)."""
    if "skipped" in result:
        return False
    if name == "turns":
        return any(status.startswith("failed") for status in result["workers"].values())
    return (result.get("returncode") not in (0, None)
            and not (name.startswith("train") and result.get("stopped") == "SIGTERM"))


def run_phase(report: dict, name: str, args, deadline: float, fn: Callable):
    """report[name] = fn(seconds), seconds its time limit or what is left of the budget; or
    skipped when less than the least it needs is left."""
    left = deadline - time.monotonic()
    least = 0.0 if args.quick else PHASES[name][2]
    phase = {"name": name}
    if left < least:
        report[name] = {"skipped": f"{max(left, 0):.0f} s of the budget left, fewer than the "
                                   f"{least:.0f} s it needs"}
        phase["result"] = "skipped: no time left"
    else:
        phase["limit_s"] = seconds = min(args.limits[name], left)
        start = time.monotonic()
        report[name] = fn(seconds)
        phase["wall_s"] = time.monotonic() - start
        phase["result"] = "failed" if failed(name, report[name]) else "done"
    report["phases"].append(phase)
    print(json.dumps({"phase": phase}), flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(args.study)
        return 0
    if not args.out:
        raise SystemExit("gpu_check: give --out or set $OUT.")
    os.makedirs(args.out, exist_ok=True)
    if not args.quick:  # a check of the GPU: fail rather than fall back to the CPU
        os.environ.setdefault("JAX_PLATFORMS", "cuda")
    start = time.monotonic()
    deadline = start + args.budget_s - 5  # the report is written in the last seconds
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command.strip(), "quick": args.quick, "budget_s": args.budget_s,
              "peak_tflops": args.peak_tflops, "cadence": main_runs.every(args.quick),
              "machine": machine(), "study": find_study(args), "phases": []}
    print(json.dumps({"machine": report["machine"], "study": report["study"]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="vdm_vae_gpu_check_") as tmp:
        work = {run: os.path.join(tmp, run) for run in main_runs.RUNS}
        work["logs"] = os.path.join(tmp, "logs")
        os.makedirs(work["logs"])
        # main.py's runs share a compilation cache: the warm run's compiles serve the others.
        work["env"] = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.environ.get(
            "JAX_COMPILATION_CACHE_DIR", os.path.join(tmp, "jax_cache")))
        try:
            run_phase(report, "turns", args, deadline,
                      lambda s: turns_phase(args, report, s, work))
            for run in ("train_eval", "train_no_eval"):
                run_phase(report, run, args, deadline,
                          lambda s, r=run: train(args, r.split("_", 1)[1], s, work))
            run_phase(report, "sample", args, deadline, lambda s: sample(args, s, work))
            run_phase(report, "bench", args, deadline, lambda s: bench(args, s, work))
        finally:
            merge_logs(work["logs"], args.out)
    report["projections"] = projections.projections(report)
    report["wall_s"] = time.monotonic() - start
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(gpu_report.markdown(report))
    print(gpu_report.markdown(report), flush=True)
    return 1 if any(p["result"] == "failed" for p in report["phases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
