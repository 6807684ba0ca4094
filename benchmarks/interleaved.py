"""The study's PyTorch train step and vdm_vae's, taking turns in two live processes: each row's
speedup with a 95% interval that a drifting machine does not bias.

    python benchmarks/interleaved.py --study /tmp/VAE-VDM --pairs 12 \
        --out experiments/results/interleaved_cpu.md

experiments/side_by_side.py runs each program in its own process, minutes apart; on a shared
machine whose speed moves by more than the 1.5x in question within the hour, one such round
cannot decide a row. Here both programs are built, compiled and warmed up once, in two worker
processes that wait on their stdin, and then take turns: block after block of `--steps` train
steps, one program at a time (the other waits in a blocking read), in the order ABBA ABBA...,
so that a drift linear in time weighs on both alike. Each pair of neighbouring blocks gives one
ratio: the study's median step over vdm_vae's. The row's speedup is the median of the pairs'
ratios, with the distribution-free 95% interval of a median (order statistics of the binomial
sign test), which assumes only that the pairs' ratios are independent draws around one median.

The workers use the settings of the programs they stand for: vdm_vae's the CPU settings of
vdm_vae/cpu/env.py (as `python benchmarks/bench.py` and `main.py` do), the study's a plain
process. `--smoke` runs vdm_vae's smoke-sized step on both sides (no checkout needed): a check
of the protocol, whose speedup should be near 1. benchmarks/turns.py (the GPU check's speed
phase) runs these same workers, many at once.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = "mvdm:none,mvdm:oe,tvdm:none,tvdm:oe,svdm:none,svdm:oe"
TARGET = 1.5


def median_interval(values: list, level: float = 0.95) -> tuple:
    """(lo, hi): the distribution-free interval of the median of `values` at >= `level`
    coverage, from the order statistics x_(k) and x_(n+1-k) with the largest k such that
    P(Binomial(n, 1/2) < k) <= (1 - level) / 2. (-inf, inf) where n is too small for any k
    (n < 6 at 95%)."""
    x, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n:
        p = math.comb(n, k) / 2**n  # P(Binomial = k)
        if tail + p > (1 - level) / 2:
            break
        tail, k = tail + p, k + 1
    if k == 0:
        return -math.inf, math.inf
    return x[k - 1], x[n - k]


def order(pairs: int) -> list:
    """Which program runs first in each pair: ABBA ABBA..., as "study" and "vdm_vae"."""
    return [("study", "vdm_vae") if i % 2 == 0 else ("vdm_vae", "study") for i in range(pairs)]


def summarise(blocks: list) -> dict:
    """The row from its blocks [{"pair", "program", "seconds": [...]}]: each program's median
    step over all its blocks, and the pairs' ratios with their median and its interval."""
    by_pair = {}
    for b in blocks:
        by_pair.setdefault(b["pair"], {})[b["program"]] = statistics.median(b["seconds"])
    ratios = [p["study"] / p["vdm_vae"] for _, p in sorted(by_pair.items())]
    lo, hi = median_interval(ratios)
    steps = {name: statistics.median([s for b in blocks if b["program"] == name
                                      for s in b["seconds"]]) for name in ("study", "vdm_vae")}
    return {"study_train_s": steps["study"], "vdm_vae_train_s": steps["vdm_vae"],
            "pair_ratios": ratios, "speedup": statistics.median(ratios), "speedup_lo": lo,
            "speedup_hi": hi, "carry_over": carry_over(blocks)}


def carry_over(blocks: list) -> dict:
    """Each program's median step in the blocks that follow its own block and in those that
    follow the other program's ({"study after itself": s, "study after the other": s, ...}):
    what taking turns costs each program, which ABBA balances but does not remove."""
    kinds = {}
    for prev, cur in zip(blocks, blocks[1:]):
        after = "itself" if prev["program"] == cur["program"] else "the other"
        kinds.setdefault(f"{cur['program']} after {after}", []).append(
            statistics.median(cur["seconds"]))
    return {kind: statistics.median(v) for kind, v in sorted(kinds.items())}


def verdict(row: dict, target: float = TARGET) -> str:
    """Whether the row's interval puts its speedup above, below or around the target."""
    if row["speedup_lo"] >= target:
        return f">= {target}x"
    if row["speedup_hi"] < target:
        return f"< {target}x"
    return "undecided"


# ---- workers ----------------------------------------------------------------------------

def _vdm_vae_step(size: str, encoder: str, batch: int, smoke: bool, substeps: int = 1):
    """One call runs vdm_vae's real train step (benchmarks.bench's: `substeps` optimiser steps
    in a lax.scan) and waits for its result."""
    import jax

    from benchmarks import bench

    model_config, config = bench._configs(size, encoder, "float32",
                                          types.SimpleNamespace(smoke=smoke, batch=batch))
    step, state, images, rng = bench._train_inputs(model_config, config, substeps)
    compiled = step.lower(state, images, rng).compile()
    holder = {"state": state}

    def train_step():
        holder["state"], metrics = compiled(holder["state"], images, rng)
        jax.block_until_ready(metrics)

    return train_step


def _timed(fn, calls: int) -> list:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def worker(program: str, size: str, encoder: str, batch: int, study: str, smoke: bool,
           substeps: int = 1):
    """Builds the program's step, runs 2 warm-up calls, prints {"ready": ...}, then for each
    line on stdin, until stdin closes: "N" runs N calls and prints {"seconds": [...]};
    "eval N" (the study only) prints {"reverse_seconds", "forward_seconds"} of N reverse steps
    and N evaluation forward passes (time_study_code.study_eval_calls).

    `smoke`: vdm_vae's smoke-sized step, or the study's tiny widths on 8x8 images."""
    ready, evals = {"ready": program}, None
    if program == "study":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import time_study_code
        import torch

        train_step, ema_model, cfg = time_study_code.study_train_step(study, size, encoder,
                                                                      batch, smoke)
        evals = time_study_code.study_eval_calls(ema_model, cfg, batch)
        ready.update(device=str(ema_model.device), torch=torch.__version__)
    else:
        train_step = _vdm_vae_step(size, encoder, batch, smoke, substeps)
    for _ in range(2):
        train_step()
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "eval" and evals is None:
            reply = {"error": "eval: only the study's worker times its evaluation"}
        elif words[0] == "eval":
            reverse_step, eval_forward = evals
            reverse_step(), eval_forward()
            reply = {"reverse_seconds": _timed(reverse_step, int(words[1])),
                     "forward_seconds": _timed(eval_forward, int(words[1]))}
        else:
            reply = {"seconds": _timed(train_step, int(words[0]))}
        print(json.dumps(reply), flush=True)


def worker_argv(program: str, size: str, encoder: str, batch: int, study: Optional[str],
                smoke: bool, substeps: int = 1) -> List[str]:
    """The command line of one worker (see `worker`)."""
    return ([sys.executable, os.path.abspath(__file__), "--worker", program, "--size", size,
             "--encoder", encoder, "--batch", str(batch), "--substeps", str(substeps)]
            + (["--study", study] if study else []) + (["--smoke"] if smoke else []))


def worker_env(program: str, base: Optional[dict] = None) -> dict:
    """The environment of a worker: vdm_vae's with the CPU settings of vdm_vae/cpu/env.py (as
    `python benchmarks/bench.py` and `main.py` use) where it computes on the CPU, the study's
    as given; both with this checkout on PYTHONPATH."""
    from vdm_vae.cpu import env as cpu_env

    env = dict(os.environ if base is None else base)
    if program == "vdm_vae" and cpu_env.computes_on_cpu(env):
        env = cpu_env.with_cpu_settings(env)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _start_worker(program: str, args, size: str, encoder: str) -> subprocess.Popen:
    study_side = program == "study" and not args.smoke
    program = "study" if study_side else "vdm_vae"
    argv = worker_argv(program, size, encoder, args.batch, args.study if study_side else None,
                       args.smoke)
    return subprocess.Popen(argv, cwd=ROOT, env=worker_env(program), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _reply(proc: subprocess.Popen, program: str) -> dict:
    for line in proc.stdout:
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"the {program} worker ended (exit code {proc.wait()}) before answering")


def measure_row(args, size: str, encoder: str) -> dict:
    """Both workers built one after the other, then `args.pairs` pairs of blocks in turn."""
    procs = {}
    try:
        for program in ("study", "vdm_vae"):  # one at a time: neither compiles beside a block
            procs[program] = _start_worker(program, args, size, encoder)
            _reply(procs[program], program)
        blocks = []
        for i, programs in enumerate(order(args.pairs)):
            for program in programs:
                time.sleep(args.gap)  # the other's threads stop spinning
                procs[program].stdin.write(f"{args.steps}\n")
                procs[program].stdin.flush()
                blocks.append({"pair": i, "program": program,
                               "seconds": _reply(procs[program], program)["seconds"]})
            pair = {b["program"]: statistics.median(b["seconds"]) for b in blocks[-2:]}
            print(f"[{size}:{encoder}] pair {i + 1}/{args.pairs}: study/vdm_vae "
                  f"{pair['study'] / pair['vdm_vae']:.2f}", file=sys.stderr, flush=True)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    return {"size": size, "encoder": encoder, "pairs": args.pairs, "steps": args.steps,
            **summarise(blocks), "blocks": blocks}


def markdown(rows: list, command: str, machine: str) -> str:
    lines = ["# The study's PyTorch code and vdm_vae, taking turns (CPU)", "",
             f"Command: `{command}`", "", f"Machine: {machine}", "",
             "Batch 64, 28x28x1, float32. Speedup: the median over pairs of neighbouring blocks "
             "(ABBA order) of the study's median step over vdm_vae's, with the 95% "
             "distribution-free interval of that median (benchmarks/interleaved.py).", "",
             "| row | study s/step | vdm_vae s/step | speedup [95% CI] | pairs x steps | "
             f"against {TARGET}x |", "|---|---|---|---|---|---|"]
    for r in rows:
        name = r["size"].upper() + ("+OE" if r["encoder"] == "oe" else "")
        lines.append(f"| {name} | {r['study_train_s']:.3f} | {r['vdm_vae_train_s']:.3f} | "
                     f"{r['speedup']:.2f} [{r['speedup_lo']:.2f}, {r['speedup_hi']:.2f}] | "
                     f"{r['pairs']} x {r['steps']} | {verdict(r)} |")
    lines += ["", "```"] + [json.dumps({k: v for k, v in r.items() if k != "blocks"})
                            for r in rows] + ["```", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", help="root of a checkout of diegogcerdas/VAE-VDM")
    p.add_argument("--rows", default=ROWS, help="size:encoder pairs, comma-separated")
    p.add_argument("--pairs", type=int, default=12, help="pairs of blocks per row (>= 6)")
    p.add_argument("--steps", type=int, default=3, help="train steps per block")
    p.add_argument("--gap", type=float, default=0.5, help="seconds of rest before each block")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--smoke", action="store_true",
                   help="vdm_vae's smoke-sized step on both sides: a check of the protocol")
    p.add_argument("--out", help="markdown file to write (its JSON beside it, .json)")
    p.add_argument("--worker", choices=("study", "vdm_vae"), help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--encoder", help=argparse.SUPPRESS)
    p.add_argument("--substeps", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.size, args.encoder, args.batch, args.study, args.smoke,
               args.substeps)
        return
    if args.pairs < 6:
        p.error(f"--pairs {args.pairs}: at least 6 are needed for a 95% interval of the median")
    if args.steps < 1:
        p.error(f"--steps {args.steps}: expected an integer >= 1")
    if not args.study and not args.smoke:
        p.error("--study is required (the root of a checkout of diegogcerdas/VAE-VDM), "
                "unless --smoke")
    rows = []
    for pair in args.rows.split(","):
        size, _, encoder = pair.partition(":")
        if size not in ("mvdm", "tvdm", "svdm") or encoder not in ("none", "oe"):
            p.error(f"--rows entry {pair!r}: expected size:encoder with size in "
                    "mvdm, tvdm, svdm and encoder in none, oe")
        rows.append(measure_row(args, size, encoder))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "blocks"}), flush=True)
    if args.out:
        from vdm_vae.cpu.env import cpu_name

        command = "python benchmarks/interleaved.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        machine = (f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, "
                   f"{time.strftime('%Y-%m-%d %H:%M')}")
        with open(args.out, "w") as f:
            f.write(markdown(rows, command, machine))
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"command": command, "machine": machine, "rows": rows}, f, indent=1)
        print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
