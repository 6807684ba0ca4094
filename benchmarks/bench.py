"""Speed of the VDM sizes with and without an encoder: train step, reverse step, sampling.

    python benchmarks/bench.py --out experiments/results/bench_cpu.md
    python benchmarks/bench.py --sizes mvdm --encoders none,oe --repeats 5 --sample-steps 10
    python benchmarks/bench.py --platform-info
    python benchmarks/bench.py --dtypes float32,bfloat16 --peak-tflops 989 --jobs 3  # a GPU

Each (size, encoder, dtype) runs in a fresh child process, so compile caches and peak memory
are its own. A child times the real pmapped train step of `make_train_step` at the configs'
settings (compile time apart, median and minimum over `--repeats` steps) and the jitted
reverse steps of `vdm_vae.sampling`; sampling a batch at T = 1000 is measured over
`--sample-steps` steps and extrapolated when that is fewer than T (the table says so).
With `--jobs N` up to N children run at once: they compile side by side and take turns, under
a file lock, for everything that is timed (on a GPU, jax then allocates memory as it goes).
`--time-limit-s` bounds the whole run; rows not done by then are reported as not run.
FLOPs come from XLA's cost analysis of one lowered step with batched attention (a loop body,
as in the per-example attention or a scan over substeps, is counted once). Peak memory is
the child's host RSS and, where the backend reports it, the device's peak. Every result is
also printed as a JSON line.

On CPU the children run with vdm_vae/cpu/env.py's settings (transparent huge pages for malloc
and, on 2+ cores, XLA's own multi-threaded convolutions) unless --plain-env is given.
"""

import argparse
import contextlib
import fcntl
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `python benchmarks/bench.py`: this checkout's packages and configs
from benchmarks.bench_report import markdown  # noqa: E402
from vdm_vae.cpu import env as cpu_env  # noqa: E402

SIZES = ("mvdm", "tvdm", "svdm")
ENCODERS = ("none", "oe")
T_SAMPLING = 1000
LOCK_ENV = "VDM_VAE_BENCH_LOCK"  # file that children lock while they time


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, of " + str(SIZES))
    p.add_argument("--encoders", default=",".join(ENCODERS), help="none and/or an encoder "
                   "of configs/base.py (oe, oepp, se, te, ue)")
    p.add_argument("--dtypes", default="float32", help="comma-separated compute dtypes "
                   "(config.model.compute_dtype): float32 and/or bfloat16")
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--repeats", type=int, default=5, help="timed train steps")
    p.add_argument("--substeps", type=int, default=0, help="optimiser steps per call "
                   "(config.training.substeps; > 1 runs them in a lax.scan; 0: per platform, "
                   "see vdm_vae/cpu/platforms.py)")
    p.add_argument("--sample-steps", type=int, default=None, help="reverse steps timed per "
                   f"sampling run (default: {T_SAMPLING}, or 10 on CPU, then extrapolated)")
    p.add_argument("--sample-repeats", type=int, default=3, help="timed sampling runs")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s of the "
                   "device, to report model FLOP utilisation (MFU)")
    p.add_argument("--smoke", action="store_true", help="the configs' :smoke sizes (tiny "
                   "widths, 8x8 images): checks that the benchmark runs, in seconds")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="skip "
                   "timing the machine's matrix product, convolution and bandwidth")
    p.add_argument("--jobs", type=int, default=1, help="children at a time (timed in turn)")
    p.add_argument("--time-limit-s", type=float, default=None, help="stop starting and "
                   "kill children after this many seconds; their rows say not run")
    p.add_argument("--out", default=None, help="markdown file to write the table to")
    p.add_argument("--platform-info", action="store_true", help="print the machine and exit")
    p.add_argument("--plain-env", action="store_true", help="run the children without "
                   "vdm_vae/cpu/env.py's settings")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "size:encoder:dtype"
    p.add_argument("--flops-only", action="store_true", help=argparse.SUPPRESS)  # with --one
    return p.parse_args(argv)


def platform_info() -> dict:
    """Machine, load, versions and the settings that change speed."""
    import flax
    import jax
    import jaxlib

    return {"cpu": cpu_env.cpu_name(), "cores": cpu_env.available_cores(),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()],
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")}


def _configs(size: str, encoder: str, dtype: str, args):
    """(ModelConfig, ml_collections config) of configs/base.py for this size and encoder."""
    try:
        from configs import base
    except ImportError as error:
        raise SystemExit("benchmarks.bench reads configs/base.py: run it from the repository "
                         "root.") from error
    from vdm_vae.model.config import model_config_from_dict

    config = base.make(vdm=size, encoder=encoder, arg="smoke" if args.smoke else None)
    config.training.batch_size_train = args.batch
    config.model.compute_dtype = dtype
    shape = tuple(config.data.synthetic_shape) if args.smoke else (28, 28, 1)
    return model_config_from_dict(config.model.to_dict(), shape), config


@contextlib.contextmanager
def exclusive():
    """Holds the file lock named by $VDM_VAE_BENCH_LOCK, if any, so that one child times
    at a time while the others compile."""
    path = os.environ.get(LOCK_ENV)
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def timed(fn, repeats: int) -> List[float]:
    """Seconds of `repeats` calls of fn (which blocks until its result is ready)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _stats(prefix: str, seconds: List[float]) -> dict:
    return {f"{prefix}_median_s": float(np.median(seconds)), f"{prefix}_min_s": min(seconds)}


def _flops(lowered, compiled=None) -> Optional[float]:
    """FLOPs from XLA's cost analysis of the compiled (else the lowered) computation."""
    for stage in (compiled, lowered):
        analysis = stage.cost_analysis() if stage is not None else None
        if isinstance(analysis, list):
            analysis = analysis[0] if analysis else None
        if analysis and analysis.get("flops"):
            return float(analysis["flops"])
    return None


def _train_inputs(model_config, config, substeps: int, devices: Optional[int] = None):
    """(step, replicated state, images [D,S,b,H,W,C], replicated rng) for the real step.

    D: `devices`, by default those a training run splits this batch over (vdm_vae/cpu/platforms.py).
    """
    import jax

    from vdm_vae.cpu.platforms import local_train_devices
    from vdm_vae.training.step import create_train_state, make_optimizer, make_train_step, replicate

    if devices is None:
        devices = local_train_devices((config.training.batch_size_train,),
                                      model_config.sm_n_embd)
    tx = make_optimizer(config.optimizer, config.training.num_steps_train)
    state = create_train_state(model_config, tx, jax.random.PRNGKey(0))
    t = config.training
    step = make_train_step(model_config, tx, config.optimizer.ema_rate, model_config.loss.beta,
                           int(t.beta_warmup_fraction * t.num_steps_train),
                           config.optimizer.ema_warmup_power)
    batch = config.training.batch_size_train
    images = np.random.default_rng(0).integers(
        0, 256, (devices, substeps, batch // devices) + model_config.image_shape, dtype=np.uint8)
    return step, replicate(state, devices), images, replicate(jax.random.PRNGKey(1), devices)


def bench_train(model_config, config, args) -> dict:
    """Compile time, step time, images/s and XLA's temp memory of the train step."""
    import jax

    step, state, images, rng = _train_inputs(model_config, config, args.substeps)
    start = time.perf_counter()
    lowered = step.lower(state, images, rng)
    compiled = lowered.compile()
    out = {"compile_s": time.perf_counter() - start, "train_devices": int(images.shape[0])}
    holder = {"state": state}

    def one_call():
        holder["state"], metrics = compiled(holder["state"], images, rng)
        jax.block_until_ready(metrics)

    with exclusive():
        one_call()  # warm-up
        per_step = [t / args.substeps for t in timed(one_call, args.repeats)]
    out.update(_stats("train_step", per_step))
    out["images_per_s"] = args.batch / out["train_step_median_s"]
    memory = compiled.memory_analysis()
    out["xla_temp_mb"] = getattr(memory, "temp_size_in_bytes", 0) / 2**20 if memory else None
    return out


def _resolved(model_config) -> str:
    from vdm_vae.cpu.attention import resolve_impl

    return resolve_impl(model_config.attention_impl)


def bench_sampling(model_config, args) -> dict:
    """Per reverse step time over `sample_steps` steps of a T = 1000 run, and the batch."""

    import jax

    from vdm_vae import sampling
    from vdm_vae.model.vae import VDMVAE, init_params

    steps = args.sample_steps or (10 if jax.default_backend() == "cpu" else T_SAMPLING)
    steps = min(steps, T_SAMPLING)
    variables = init_params(model_config, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (args.batch,) + model_config.image_shape)
    w = (jax.random.normal(jax.random.PRNGKey(2), (args.batch, model_config.w_dim))
         if model_config.conditional else None)
    rng = jax.random.PRNGKey(3)
    start = time.perf_counter()
    reverse = sampling.reverse_steps.lower(variables, z, w, rng, config=model_config,
                                           num_steps=T_SAMPLING, start=0, stop=steps).compile()
    decode = jax.jit(lambda v, z: VDMVAE(model_config).apply(
        v, z, method=VDMVAE.generate_x)).lower(variables, z).compile()
    out = {"sample_compile_s": time.perf_counter() - start, "sample_steps_timed": steps}
    with exclusive():
        def run():
            jax.block_until_ready(reverse(variables, z, w, rng))

        run()
        out.update(_stats("reverse_step", [t / steps for t in timed(run, args.sample_repeats)]))
        jax.block_until_ready(decode(variables, z))
        decode_s = min(timed(lambda: jax.block_until_ready(decode(variables, z)), 3))
    out["sample_T1000_s"] = out["reverse_step_median_s"] * T_SAMPLING + decode_s
    out["sample_T1000_extrapolated"] = steps < T_SAMPLING
    return out


def count_flops(model_config, config, batch: int) -> dict:
    """FLOPs of one train step and one reverse step at `batch`, from XLA's cost analysis of
    the lowered programs with batched attention, for every row alike (XLA counts a loop body,
    a substeps scan or per-example attention's lax.map, once). The train step is counted on
    one device: the whole batch's FLOPs, however many devices a run splits it over."""
    import dataclasses

    import jax

    from vdm_vae.model.vae import VDMVAE, init_params

    batched = dataclasses.replace(model_config, attention_impl="batched")
    step, state, images, rng = _train_inputs(batched, config, 1, devices=1)  # the whole batch
    variables = jax.eval_shape(lambda: init_params(batched, jax.random.PRNGKey(0)))
    z = jax.ShapeDtypeStruct((batch,) + batched.image_shape, jax.numpy.float32)
    w = (jax.ShapeDtypeStruct((batch, batched.w_dim), jax.numpy.float32)
         if batched.conditional else None)
    one = jax.jit(lambda v, z, w: VDMVAE(batched).apply(
        v, 0, T_SAMPLING, z, w, jax.random.PRNGKey(3), method=VDMVAE.reverse_step))
    return {"train_flops": _flops(step.lower(state, images, rng)),
            "reverse_step_flops": _flops(one.lower(variables, z, w))}


def flops_on_cpu(job: str, args) -> dict:
    """count_flops of `job` ("size:encoder:dtype") in a child on the CPU backend, for
    backends whose cost analysis gives none (a GPU's, with jax 0.11): the count is the
    program's, not the device's."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(_child_argv(args, job) + ["--flops-only"], env=env,
                         capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"flops_error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return dict(json.loads(lines[-1]), flops_counted_on="cpu")


def run_one(size: str, encoder: str, dtype: str, args) -> dict:
    """All measurements of one (size, encoder, dtype), in this process."""
    import jax

    from vdm_vae.cpu.platforms import resolve_substeps

    model_config, config = _configs(size, encoder, dtype, args)
    args.substeps = resolve_substeps(args.substeps)
    row = {"size": size, "encoder": encoder, "compute_dtype": dtype, "batch": args.batch,
           "substeps": args.substeps, "attention": _resolved(model_config),
           "image_shape": list(model_config.image_shape), "backend": jax.default_backend()}
    row.update(bench_train(model_config, config, args))
    row.update(bench_sampling(model_config, args))
    row.update(count_flops(model_config, config, args.batch))
    if row["backend"] != "cpu" and not (row["train_flops"] and row["reverse_step_flops"]):
        row.update(flops_on_cpu(f"{size}:{encoder}:{dtype}", args))
    for kind, flops_key, time_key in (("train", "train_flops", "train_step_median_s"),
                                      ("sample", "reverse_step_flops", "reverse_step_median_s")):
        if row.get(flops_key):
            row[f"{kind}_gflop_per_s"] = row[flops_key] / row[time_key] / 1e9
            if args.peak_tflops:  # per accelerator; a CPU's host devices share its cores
                devices = row["train_devices"] if kind == "train" and row["backend"] != "cpu" else 1
                row[f"{kind}_mfu"] = row[f"{kind}_gflop_per_s"] / (1e3 * args.peak_tflops * devices)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = jax.local_devices()[0].memory_stats() or {}
    row["device_peak_mb"] = (stats["peak_bytes_in_use"] / 2**20
                             if "peak_bytes_in_use" in stats else None)
    return row


def calibrate(repeats: int = 10) -> dict:
    """The machine's speed now, best of `repeats`: a jitted 4096 x 4096 float32 matrix product
    and a 64 -> 64 3x3 convolution at 28 x 28, batch 64, forward, in GFLOP/s, and memory
    bandwidth as GB/s read + written by y = 1.5 x + 0.5 over 256 MB of float32."""
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (4096, 4096))
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 64))
    k = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 64, 64))
    v = jax.random.normal(jax.random.PRNGKey(3), (64 * 2 ** 20,))
    matmul = jax.jit(lambda a: a @ a)
    conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    out = {}
    for name, fn, inputs, flops in (("matmul_gflop_per_s", matmul, (a,), 2 * 4096 ** 3),
                                    ("conv_gflop_per_s", conv, (x, k), 2 * 64 * 784 * 9 * 64 * 64),
                                    ("stream_gb_per_s", jax.jit(lambda v: 1.5 * v + 0.5), (v,),
                                     2 * 4 * v.size)):
        run = functools.partial(lambda f, xs: jax.block_until_ready(f(*xs)), fn, inputs)
        with exclusive():
            run()
            out[name] = flops / 1e9 / min(timed(run, repeats))
    return out


def _child_argv(args, job: str) -> List[str]:
    argv = [sys.executable, "-m", "benchmarks.bench", "--one", job,
            "--batch", str(args.batch), "--repeats", str(args.repeats),
            "--substeps", str(args.substeps), "--sample-repeats", str(args.sample_repeats)]
    for flag, value in (("--sample-steps", args.sample_steps),
                        ("--peak-tflops", args.peak_tflops)):
        if value:
            argv += [flag, str(value)]
    return argv + (["--smoke"] if args.smoke else [])


def _jobs(args) -> List[str]:
    """The children's "size:encoder:dtype", between two calibrations of the machine."""
    jobs = [f"{s}:{e}:{d}" for s in args.sizes.split(",") for e in args.encoders.split(",")
            for d in args.dtypes.split(",")]
    return ["calibrate:start:-"] + jobs + ["calibrate:end:-"] if args.calibrate else jobs


def _child_env(args, lock_path: str) -> dict:
    env = dict(os.environ)
    if not args.plain_env and cpu_env.computes_on_cpu(env):
        env = cpu_env.with_cpu_settings(env)
    if args.jobs > 1:
        env[LOCK_ENV] = lock_path
    return env


def _row(job: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The child's last JSON line, or {"skipped": why} when it failed (stderr echoed)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if returncode or not lines:
        print(f"bench {job} failed:\n{stderr[-3000:]}", file=sys.stderr, flush=True)
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return _skipped(job, f"failed ({last[:120]})")
    size, encoder, _ = job.split(":")
    row = json.loads(lines[-1])
    return dict(row, calibration=encoder) if size == "calibrate" else row


def _start(args, job: str, env: dict, tmp: str) -> subprocess.Popen:
    """A child whose output goes to files (a full pipe would stall it)."""
    out, err = (open(os.path.join(tmp, f"{job}.{n}"), "w+") for n in ("out", "err"))
    proc = subprocess.Popen(_child_argv(args, job), env=env, text=True, stdout=out, stderr=err)
    proc.files = (out, err)
    return proc


def _finish(job: str, proc: subprocess.Popen, late: bool) -> dict:
    texts = []
    for f in proc.files:
        f.seek(0)
        texts.append(f.read())
        f.close()
    if late and proc.returncode:
        return _skipped(job, "time limit")
    return _row(job, proc.returncode, *texts)


def run_all(args) -> List[dict]:
    """Runs the children, up to args.jobs at a time (the end calibration after all others);
    their rows, echoed as JSON lines as they come, in the order of the jobs."""
    deadline = time.monotonic() + args.time_limit_s if args.time_limit_s else None
    jobs, running, done = _jobs(args), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        env = _child_env(args, os.path.join(tmp, "lock"))
        while len(done) < len(jobs):
            late = deadline is not None and time.monotonic() > deadline
            waiting = [j for j in jobs if j not in done and j not in running]
            last = waiting == jobs[-1:] and args.calibrate
            while waiting and len(running) < args.jobs and not late and not (last and running):
                job = waiting.pop(0)
                running[job] = _start(args, job, env, tmp)
            for job, proc in list(running.items()):
                if late:
                    proc.kill()
                if proc.poll() is not None:
                    done[job] = _finish(job, running.pop(job), late)
                    print(json.dumps(done[job]), flush=True)
            for job in waiting if late else ():
                done[job] = _skipped(job, "time limit")
                print(json.dumps(done[job]), flush=True)
            time.sleep(0.05)
    return [done[j] for j in jobs if not (j.startswith("calibrate:") and "skipped" in done[j])]


def _skipped(job: str, why: str) -> dict:
    """The row of a job that gave no measurement, named by its size, encoder and dtype (a
    calibration's by nothing)."""
    if job.startswith("calibrate:"):
        return {"skipped": why}
    return dict(zip(("size", "encoder", "compute_dtype"), job.split(":")), skipped=why)


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    if args.one and args.flops_only:
        size, encoder, dtype = args.one.split(":")
        model_config, config = _configs(size, encoder, dtype, args)
        print(json.dumps(count_flops(model_config, config, args.batch)), flush=True)
        return
    if args.one:
        size, encoder, dtype = args.one.split(":")
        row = calibrate() if size == "calibrate" else run_one(size, encoder, dtype, args)
        row["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES", "")
        row["xla_flags"] = os.environ.get("XLA_FLAGS", "")
        print(json.dumps(row), flush=True)
        return
    # This process only starts the children: on a GPU it must not take most of the memory
    # (jax's default), and the children then allocate as they go as well.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    info = platform_info()
    print(json.dumps({"platform": info}), flush=True)
    if args.platform_info:
        return
    rows = run_all(args)
    if args.out:
        command = "python benchmarks/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(markdown(rows, info, command.strip(), args.peak_tflops))
        print(f"wrote {args.out}", flush=True)
    if any(r.get("skipped", "").startswith("failed") for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
