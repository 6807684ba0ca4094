"""What a training run spends outside its train steps: the host loop's ceiling, and the cost of
each checkpoint and each periodic evaluation, as main.py's loop sees them.

    python benchmarks/host_loop.py --config=configs/svdm_oe.py --out=/tmp/host_loop.json

The training loop of main.py (vdm_vae.training.loop.train_and_evaluate) runs as it is, with
its data, batching, transfers, metric fetches, logging, checkpoints and evaluations, around a
train step that does no work: it returns the state with its step advanced and metrics of the
real step's names and shapes (zeros, plus the batch's mean so that every batch is read on the
device). The time of each call of that step is recorded, so:

- the ceiling is the loop's steps/s between saves and evaluations: no train step of any device
  can make main.py faster than that;
- a checkpoint's or an evaluation's cost is the gap it leaves between two calls, less the
  median gap, in seconds and in steps at a given step rate (--step-rates: steps/s of a real
  train step, e.g. a GPU's).

The evaluation runs on the config's real model (fresh parameters, the config's periodic
evaluation fields: test batches, the encoder's probe, the sample grids); its first call
compiles, so the table shows the first evaluation and the later ones apart. On a CPU an
evaluation's device work is the CPU's; the GPU check (benchmarks/gpu_check.sh) measures it on a
GPU. Prints a markdown table; --out writes JSON.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/svdm_oe.py", help="config file[:arg]")
    p.add_argument("--steps", type=int, default=3000, help="steps of the run")
    p.add_argument("--steps-per-save", type=int, default=1000)
    p.add_argument("--steps-per-eval", type=int, default=1000,
                   help="evaluations at these multiples (the first one compiles)")
    p.add_argument("--steps-per-logging", type=int, default=100)
    p.add_argument("--substeps", type=int, default=1, help="optimiser steps per call")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="another config field, e.g. training.eval_sample_steps=25")
    p.add_argument("--step-rates", default="43",
                   help="comma-separated steps/s of a real train step, to express the costs "
                        "in steps (43: SVDM + OE's step on one H200, experiments/results/"
                        "gpu_h200/)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    return p.parse_args(argv)


def load_config(spec: str, overrides: List[str], args):
    """The config of `spec` ("file.py[:arg]") with the run's fields and `overrides` set."""
    import importlib.util

    import ml_collections

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("host_loop_config",
                                                         os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    # The run is stopped by a signal after `steps` (`idle_train_step`), before its schedule ends.
    config.training.update(num_steps_train=2 * args.steps, steps_per_save=args.steps_per_save,
                           steps_per_eval=args.steps_per_eval, substeps=args.substeps,
                           steps_per_logging=args.steps_per_logging, tensorboard=False)
    for item in overrides:
        field, _, text = item.partition("=")
        node = config
        *parents, leaf = field.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = type(node[leaf])(json.loads(text)) if not isinstance(
            node[leaf], str) else text
    return ml_collections.FrozenConfigDict(config).as_configdict()


def idle_train_step(call_times: list, calls: int):
    """A stand-in for vdm_vae.training.step.make_train_step: the same signature and outputs
    (the real step's metric names and shapes, from tracing it once), no work; appends
    time.perf_counter() to call_times at every call, and after `calls` calls sends this
    process SIGINT, on which the loop saves and stops (no final evaluation to wait for)."""
    import jax
    import jax.numpy as jnp

    from vdm_vae.training import step as step_lib

    def make(model_config, tx, *args, **kwargs):
        real = step_lib.make_train_step(model_config, tx, *args, **kwargs)
        compiled = []

        def build(state, images, rng):
            _, shapes = jax.eval_shape(real, state, images, rng)  # [D, S] each

            def steps(state, images, rng):
                del rng
                seen = jnp.mean(images.astype(jnp.float32))
                metrics = {k: (jnp.ones(s.shape[1:], bool) if s.dtype == bool  # finite
                               else jnp.zeros(s.shape[1:], s.dtype) + seen.astype(s.dtype))
                           for k, s in shapes.items()}
                return state.replace(step=state.step + images.shape[0]), metrics

            return jax.pmap(steps, axis_name=step_lib.AXIS, donate_argnums=(0,))

        def call(state, images, rng):
            call_times.append(time.perf_counter())
            if not compiled:
                compiled.append(build(state, images, rng))
            if len(call_times) == calls:
                os.kill(os.getpid(), signal.SIGINT)
            return compiled[0](state, images, rng)

        return call

    return make


def gaps(call_times: list, substeps: int, config) -> dict:
    """The loop's ceiling and the extra time at each save and evaluation, from call times."""
    t = config.training
    # Call k (0-based) runs steps k*S+1 .. (k+1)*S; the gap after it holds what the loop did
    # at step (k+1)*S: a save, an evaluation, a log line.
    deltas = [(substeps * (k + 1), b - a) for k, (a, b) in
              enumerate(zip(call_times[:-1], call_times[1:]))]
    deltas = deltas[1:]  # the first call compiles
    plain = [d for step, d in deltas if step % t.steps_per_save and step % t.steps_per_eval]
    median = statistics.median(plain)
    saves = [(step, d - median) for step, d in deltas
             if step % t.steps_per_save == 0 and step % t.steps_per_eval]
    evals = [(step, d - median) for step, d in deltas if step % t.steps_per_eval == 0]
    logged = [d - median for step, d in deltas
              if step % t.steps_per_logging == 0 and step % t.steps_per_save
              and step % t.steps_per_eval]
    return {"ceiling_steps_per_s": substeps / median,
            "host_ms_per_step": 1e3 * median / substeps,
            "ceiling_steps_per_s_with_logging": substeps * len(plain) / sum(plain),
            "logging_extra_s": statistics.median(logged) if logged else None,
            "saves": saves, "evals": evals}


def run(args, argv: List[str]) -> dict:
    """Trains with the idle step in a fresh workdir; the results as a dict."""
    from vdm_vae.cpu.env import cpu_name
    from vdm_vae.runtime.signals import Stopped
    from vdm_vae.training import loop

    config = load_config(args.config, args.set, args)
    call_times: list = []
    calls = args.steps // args.substeps
    real_step = loop.make_train_step
    loop.make_train_step = idle_train_step(call_times, calls)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="vdm_vae_host_loop_") as workdir:
            loop.train_and_evaluate(config, workdir)
    except Stopped:
        pass
    finally:
        loop.make_train_step = real_step
    import jax

    result = {"config": args.config, "overrides": args.set, "steps": args.steps,
              "substeps": args.substeps, "steps_per_save": args.steps_per_save,
              "steps_per_eval": args.steps_per_eval,
              "steps_per_logging": args.steps_per_logging,
              "batch": config.training.batch_size_train, "wall_s": time.perf_counter() - start,
              "backend": jax.default_backend(), "devices": jax.local_device_count(),
              "cpu": cpu_name(), "command": " ".join(["python benchmarks/host_loop.py"] + argv)}
    result.update(gaps(call_times, args.substeps, config))
    result["step_rates"] = [float(r) for r in args.step_rates.split(",")]
    return result


def markdown(r: dict) -> str:
    """The results as a table: ceiling, then each save and evaluation in seconds and steps."""
    rates = r["step_rates"]
    head = " | ".join(f"steps at {rate:g}/s" for rate in rates)
    lines = [f"`{r['command']}` ({r['backend']}, {r['devices']} device(s), {r['cpu']}; "
             f"batch {r['batch']}, substeps {r['substeps']})", "",
             f"Host loop ceiling: {r['ceiling_steps_per_s']:.0f} steps/s "
             f"({r['host_ms_per_step']:.2f} ms a step); with the logging steps "
             f"{r['ceiling_steps_per_s_with_logging']:.0f} steps/s.", "",
             f"| event | step | seconds | {head} |", "|---|---|---|" + "---|" * len(rates)]
    for kind, rows in (("checkpoint", r["saves"]), ("evaluation", r["evals"])):
        for i, (step, seconds) in enumerate(rows):
            label = kind + (" (compiles)" if kind == "evaluation" and i == 0 else "")
            cells = " | ".join(f"{seconds * rate:.0f}" for rate in rates)
            lines.append(f"| {label} | {step} | {seconds:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    result = run(args, argv)
    print(markdown(result), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
