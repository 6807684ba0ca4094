"""The GPU check: the machine, the benchmark, a real training run and sampling, in one command.

    OUT=/tmp/gpu benchmarks/gpu_check.sh            # on a GPU machine; experiments/README.md
    OUT=/tmp/gpu benchmarks/gpu_check.sh --quick    # on a CPU, tiny sizes: checks the script
    python benchmarks/gpu_check.py --prepare        # once, with network: fills .gpu/

Phases, each bounded so that the whole ends within --budget-s (540 s; on the H200 of
experiments/results/gpu_h200/ the benchmark's 12 rows took 272 s with 6 compiling at once, the
training 175 s and the sampling 62 s):
1. machine: nvidia-smi (GPU, driver, memory), python, jax, jaxlib, flax and jax's devices;
2. benchmark: `python benchmarks/bench.py` for MVDM, TVDM and SVDM, no encoder and OE, float32
   and bfloat16, batch 64, with --peak-tflops 989.4: NVIDIA's dense bfloat16 figure for the
   H100 and H200 SXM (1,979 with sparsity); MFU of the float32 rows is against it too;
3. training: main.py with configs/svdm_oe.py on real MNIST (--data: a local .npz, the machine
   has no network) for --train-s seconds, then SIGTERM, on which it saves a checkpoint and
   stops; steps/s come from its metrics.jsonl, input pipeline, checkpoints (every 500 steps)
   and periodic evaluation (every 1,000) included;
4. sampling: 1,000 images at T = 1000 from that checkpoint's EMA parameters, in 4 calls of
   250 to one compiled sampler, images/s with the compile apart (after each call, so that a
   phase cut by its time limit still reports a rate).
Writes to $OUT (or --out): gpu_check.json (everything), gpu_check.md (a summary), bench.md,
bench.log, train.log, sample.log and samples.png. A phase that fails or runs out of time is
reported as such and the others still run; the exit status is 1 when any phase failed.
Without --quick every process runs with JAX_PLATFORMS=cuda (unless set): no GPU, no numbers.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_TFLOPS = 989.4  # H100 / H200 SXM, dense bfloat16 (NVIDIA's datasheet)
PREPARED = os.path.join(ROOT, ".gpu")
WHEELS = ("ml_collections==1.1.0", "clu==0.0.12")  # missing on the device; deps are there
MNIST_FILE = os.path.join(PREPARED, "mnist.npz")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for the results "
                   "(default: $OUT)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds on a CPU")
    p.add_argument("--data", default=None, help=f"MNIST .npz (default {MNIST_FILE}; "
                   "--quick: synthetic images unless given)")
    # The time limits are for the GPU; --quick checks that the phases run, however loaded
    # the CPU, and bounds them only loosely.
    p.add_argument("--budget-s", type=float, default=None, help="wall time of the whole check "
                   "(540; --quick: 3600)")
    p.add_argument("--bench-s", type=float, default=None, help="time limit of the benchmark "
                   "(250; --quick: 1500)")
    p.add_argument("--train-s", type=float, default=None, help="training time, compile in "
                   "(170; --quick: 1500)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    p.add_argument("--prepare", action="store_true", help=f"download {', '.join(WHEELS)} "
                   f"into .gpu/whl and write {MNIST_FILE} from the MNIST cache, then exit")
    p.add_argument("--sample-child", default=None, help=argparse.SUPPRESS)  # workdir
    p.add_argument("--samples", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--sample-steps", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--sample-chunks", type=int, default=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, full, quick in (("budget_s", 540.0, 3600.0), ("bench_s", 250.0, 1500.0),
                              ("train_s", 170.0, 1500.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def prepare():
    """Fills .gpu/ (git-ignored): the wheels the device lacks and MNIST as a compressed .npz."""
    import numpy as np

    from vdm_vae.data.mnist import ARRAY_KEYS, load_mnist

    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform",
                    "manylinux_2_17_x86_64", "-d", os.path.join(PREPARED, "whl"), *WHEELS],
                   check=True)
    arrays = load_mnist()
    np.savez_compressed(MNIST_FILE, **{k: arrays[k] for k in ARRAY_KEYS})
    for folder, _, files in os.walk(PREPARED):
        for name in files:
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


def bench(args, seconds: float) -> dict:
    """The benchmark's rows (JSON lines of its output) and its own files in args.out."""
    argv = [sys.executable, "-m", "benchmarks.bench", "--batch", "64", "--peak-tflops",
            str(args.peak_tflops), "--time-limit-s", str(max(seconds - 20, 1)),
            "--out", os.path.join(args.out, "bench.md")]
    if args.quick:
        argv += ["--smoke", "--sizes", "mvdm", "--encoders", "oe", "--dtypes",
                 "float32,bfloat16", "--no-calibrate", "--repeats", "1", "--sample-steps", "2",
                 "--sample-repeats", "1"]
    else:
        # The largest first: if the time limit cuts rows, it cuts the quickest to redo. All 12
        # compile at once (37-94 s a row on the H200, most of the phase) and time in turn.
        argv += ["--sizes", "svdm,tvdm,mvdm", "--encoders", "none,oe", "--dtypes",
                 "float32,bfloat16", "--jobs", "12", "--repeats", "10", "--sample-steps", "100",
                 "--sample-repeats", "2"]
    log = os.path.join(args.out, "bench.log")
    result = run_for(argv, seconds, log)
    with open(log) as f:
        rows = [json.loads(ln) for ln in f if ln.startswith("{") and '"platform"' not in ln]
    return dict(result, command="python " + " ".join(argv[1:]), rows=rows)


def train(args, workdir: str, seconds: float) -> dict:
    """main.py on SVDM + OE for `seconds`; steps and steps/s from its metrics.jsonl."""
    config = "configs/svdm_oe.py:smoke" if args.quick else "configs/svdm_oe.py"
    t = ("num_steps_train=4 steps_per_logging=2 steps_per_save=2 steps_per_eval=4" if args.quick
         else "num_steps_train=1000000 steps_per_logging=100 steps_per_save=500 "
              "steps_per_eval=1000")
    argv = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}"]
    # No TensorBoard files: the device has no TensorFlow, and --quick runs as the device does.
    argv += [f"--config.training.{kv}" for kv in t.split() + ["tensorboard=False"]]
    data = args.data or (None if args.quick else MNIST_FILE)
    if data:
        argv += ["--config.data.source=mnist", f"--config.data.path={os.path.abspath(data)}"]
    result = run_for(argv, seconds, os.path.join(args.out, "train.log"))
    result.update(command=" ".join(argv[1:]), data=data or "synthetic")
    result.update(training_summary(os.path.join(workdir, "metrics.jsonl")))
    return result


def training_summary(metrics_path: str) -> dict:
    """Steps done, steps/s (each logging window's, and over all windows after the first,
    which holds the compile) and the last train and eval bound, from metrics.jsonl."""
    if not os.path.exists(metrics_path):
        return {"steps": 0}
    with open(metrics_path) as f:
        rows = [json.loads(ln) for ln in f if ln.strip()]
    train_rows = [r for r in rows if "train/steps_per_sec" in r]
    evals = [r for r in rows if "eval/bpd" in r]
    out = {"steps": max((r["step"] for r in train_rows), default=0), "evals": len(evals),
           "steps_per_s_windows": [round(r["train/steps_per_sec"], 3) for r in train_rows]}
    if len(train_rows) >= 2:
        first, last = train_rows[0], train_rows[-1]
        out["steps_per_s_after_first_window"] = (
            (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-9))
    if train_rows:
        out["last_train_bpd"] = train_rows[-1].get("train/bpd")
    if evals:
        out["last_eval_bpd"] = evals[-1]["eval/bpd"]
    return out


def sample_child(args):
    """In this process: sample args.samples images at T = args.sample_steps from the run in
    args.sample_child (its EMA params; fresh ones if it has no checkpoint), in
    args.sample_chunks calls of one compiled sampler; a JSON line after each call, so that a
    phase stopped at its time limit still reports the rate of the calls it finished."""
    import jax
    import numpy as np

    from vdm_vae import sampling
    from vdm_vae.model.vae import init_params
    from vdm_vae.runtime.images import image_grid, save_png
    from vdm_vae.training.checkpoints import load, load_run_config

    try:
        params, config = load(args.sample_child)
        source = "checkpoint"
    except FileNotFoundError:
        _, config = load_run_config(args.sample_child)
        params, source = init_params(config, jax.random.PRNGKey(0))["params"], "fresh init"
    variables = {"params": params}
    n, steps, chunks = args.samples, args.sample_steps, args.sample_chunks
    if n % chunks:
        raise SystemExit(f"--samples={n} is not a multiple of --sample-chunks={chunks}.")
    per_call = n // chunks
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    z = jax.random.normal(keys[0], (n,) + tuple(config.image_shape))
    w = jax.random.normal(keys[1], (n, config.w_dim)) if config.conditional else None
    start = time.perf_counter()
    reverse = sampling.reverse_steps.lower(
        variables, z[:per_call], None if w is None else w[:per_call], keys[2], config=config,
        num_steps=steps, start=0, stop=steps).compile()
    decode = sampling.decode_z0.lower(variables, z[:per_call], keys[2], config=config).compile()
    compile_s = time.perf_counter() - start
    seconds = 0.0
    for done in range(per_call, n + 1, per_call):
        part = slice(done - per_call, done)
        start = time.perf_counter()
        z_0 = reverse(variables, z[part], None if w is None else w[part], keys[2])
        images = np.asarray(decode(variables, z_0, keys[2]))
        seconds += time.perf_counter() - start
        if done == per_call:
            save_png(os.path.join(args.out, "samples.png"), image_grid(images[:64], 8))
        print(json.dumps({"params": source, "images": n, "images_done": done,
                          "images_per_call": per_call, "T": steps, "compile_s": compile_s,
                          "seconds": seconds, "images_per_s": done / seconds,
                          "backend": jax.default_backend()}), flush=True)


def sample(args, workdir: str, seconds: float) -> dict:
    n, steps, chunks = (16, 10, 2) if args.quick else (args.samples, args.sample_steps,
                                                       args.sample_chunks)
    argv = [sys.executable, os.path.abspath(__file__), "--sample-child", workdir, "--out",
            args.out, "--samples", str(n), "--sample-steps", str(steps), "--sample-chunks",
            str(chunks)]
    log = os.path.join(args.out, "sample.log")
    result = run_for(argv, seconds, log, grace_s=5.0)
    with open(log) as f:
        lines = [ln for ln in f if ln.startswith("{")]
    return dict(result, **(json.loads(lines[-1]) if lines else {"images": n, "T": steps}))


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def summary_markdown(report: dict) -> str:
    """gpu_check.md: the machine, the command, and one table per phase."""
    m, t, s = report["machine"], report["train"], report["sample"]
    lines = ["# GPU check", "", f"Command: `{report['command']}`", "",
             f"Machine: {m.get('nvidia_smi')}; backend {m.get('backend')} "
             f"({', '.join(m.get('devices', []))}), {m.get('cpu')}, {m.get('cores')} cores; "
             f"python {m.get('python')}, jax {m.get('jax')}, jaxlib {m.get('jaxlib')}, flax "
             f"{m.get('flax')}. Wall time {report['wall_s']:.0f} s.", "",
             f"## Benchmark (`{report['bench']['command']}`)",
             "", f"MFU against {report['peak_tflops']:g} TFLOP/s (dense bfloat16, H100/H200 "
             "SXM) for every row. The full table with every column: bench.md.", "",
             "| size | encoder | dtype | images/s | train step ms | train MFU | reverse step ms "
             "| sample MFU |", "|---|---|---|---|---|---|---|---|"]
    for r in report["bench"]["rows"]:
        if "size" not in r:
            continue
        lines.append(
            f"| {r['size']} | {r['encoder']} | {r.get('compute_dtype')} | "
            f"{_fmt(r.get('images_per_s'), '{:.0f}')} | "
            f"{_fmt(r.get('train_step_median_s') and 1e3 * r['train_step_median_s'], '{:.2f}')}"
            f" | {_fmt(r.get('train_mfu'), '{:.1%}')} | "
            f"{_fmt(r.get('reverse_step_median_s') and 1e3 * r['reverse_step_median_s'], '{:.2f}')}"
            f" | {_fmt(r.get('sample_mfu'), '{:.1%}')} |" + (
                f" not run: {r['skipped']}" if "skipped" in r else ""))
    lines += ["", f"## Training (`python {t['command']}`, data: {t['data']})", "",
              f"{t['steps']} steps in {t['wall_s']:.0f} s wall (compile included; stopped by "
              f"{t['stopped'] or 'its own exit'}, exit status {t['returncode']}); "
              f"{_fmt(t.get('steps_per_s_after_first_window'), '{:.2f}')} steps/s after the "
              f"first logging window (input pipeline, checkpoints and {t.get('evals', 0)} "
              f"evaluations included); per window: {t.get('steps_per_s_windows')}. Last train "
              f"bpd {_fmt(t.get('last_train_bpd'), '{:.3f}')}, last eval bpd "
              f"{_fmt(t.get('last_eval_bpd'), '{:.3f}')}.", "",
              "## Sampling", "",
              f"{s.get('images')} images at T = {s.get('T')} from the {s.get('params', '?')} "
              f"parameters, {s.get('images_per_call')} per call"
              + (f" ({s['images_done']} done when the time limit stopped it)"
                 if s.get("images_done", s.get("images")) != s.get("images") else "")
              + f": {_fmt(s.get('seconds'), '{:.1f}')} s, "
              f"{_fmt(s.get('images_per_s'), '{:.1f}')} images/s (compile "
              f"{_fmt(s.get('compile_s'), '{:.0f}')} s apart; stopped: {s.get('stopped')}). "
              "64 of them: samples.png."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare()
        return 0
    if not args.out:
        raise SystemExit("gpu_check: give --out or set $OUT.")
    os.makedirs(args.out, exist_ok=True)
    if args.sample_child:
        sample_child(args)
        return 0
    if not args.quick:  # a check of the GPU: fail rather than fall back to the CPU
        os.environ.setdefault("JAX_PLATFORMS", "cuda")
    start = time.monotonic()
    deadline = start + args.budget_s
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command.strip(), "peak_tflops": args.peak_tflops,
              "machine": machine()}
    print(json.dumps({"machine": report["machine"]}), flush=True)
    report["bench"] = bench(args, min(args.bench_s, deadline - time.monotonic() - 60))
    print(json.dumps({"bench_rows": len(report["bench"]["rows"])}), flush=True)
    with tempfile.TemporaryDirectory(prefix="vdm_vae_gpu_check_") as workdir:
        report["train"] = train(args, workdir, min(args.train_s,
                                                   deadline - time.monotonic() - 60))
        print(json.dumps({"train_steps": report["train"]["steps"]}), flush=True)
        report["sample"] = sample(args, workdir, deadline - time.monotonic() - 5)
    report["wall_s"] = time.monotonic() - start
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(summary_markdown(report))
    print(summary_markdown(report), flush=True)
    failed = [name for name in ("bench", "train", "sample")
              if report[name]["returncode"] not in (0, None)
              and not (name == "train" and report["train"]["stopped"] == "SIGTERM")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
