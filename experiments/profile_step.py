"""Where the time of one train step goes on XLA:CPU: per-operation times from jax's profiler.

    python experiments/profile_step.py --size=mvdm --encoder=oe [--batch=64] [--steps=3]

Builds the train step of a config of the study's grid exactly as `python -m vdm_vae.bench`
does (same settings of the process), times --steps steps under jax's profiler and prints

  - the wall time per step;
  - the operations' time per step by kind: convolutions, matrix products, reductions
    (GroupNorm statistics, sums), copies and transposes, elementwise fusions, the rest;
  - the --top operations by time, each with its kind and its HLO shape.

Operations can run at the same time on different threads, so their times can add up to more
than the wall time: read the kinds' shares, not their sum. XLA:CPU runs its own (Eigen)
convolutions asynchronously, and their events cover only the dispatch: the convolutions'
time is not in the table; it shows as wall time that the operations do not account for, and
`python experiments/conv_directions.py` times them directly. With --json the same figures
go to a file for machines.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vdm_vae import bench, cpu_env  # noqa: E402

KINDS = ("convolution", "matrix product", "reduction", "copy/transpose", "elementwise", "other")
WAITS = ("ThunkExecutor", "wait for completion")  # the executor's own waiting, not work


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="mvdm", choices=("mvdm", "tvdm", "svdm"))
    p.add_argument("--encoder", default="none", help="none or an encoder of the grid (oe, ...)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="profiled steps (after one warm-up)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--smoke", action="store_true", help="the configs' tiny smoke sizes")
    args = p.parse_args(argv)
    for name in ("batch", "steps", "top"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} is invalid: expected an int >= 1.")
    return args


def hlo_kinds(hlo_text: str) -> dict:
    """Instruction name -> (kind, shape) of every instruction of a compiled HLO module.

    A fusion gets the kind of the heaviest operation in the computation it calls:
    convolution, then dot, then reduce, then copy/transpose, else elementwise.
    """
    bodies, current = {}, None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            bodies[current] = []
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None:
            bodies[current].append(line)
    kinds = {}
    pattern = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+(?: \S+)*?) ([\w\-]+)\(")
    for body in bodies.values():
        for line in body:
            m = pattern.match(line)
            if not m:
                continue
            name, shape, opcode = m.groups()
            text = line
            called = re.search(r"calls=%?([\w.\-]+)", line)
            if called and called.group(1) in bodies:
                text += "\n" + "\n".join(bodies[called.group(1)])
            kinds[name] = (_kind(opcode, text), shape.split("{")[0])
    return kinds


def _kind(opcode: str, text: str) -> str:
    if opcode == "convolution" or " convolution(" in text:
        return "convolution"
    if opcode == "dot" or " dot(" in text or "__onednn$matmul" in text:
        return "matrix product"
    if opcode in ("reduce", "reduce-window") or " reduce(" in text:
        return "reduction"
    if opcode in ("copy", "transpose") or (opcode == "fusion" and re.search(
            r" (copy|transpose)\(", text) and not re.search(
            r" (add|multiply|subtract|divide|exponential|tanh|logistic|maximum)\(", text)):
        return "copy/transpose"
    if opcode == "fusion" or opcode in ("add", "multiply", "subtract", "divide", "select",
                                        "exponential", "logistic", "tanh", "maximum"):
        return "elementwise"
    return "other"


def op_times(xspace_path: str) -> collections.Counter:
    """Operation name -> total ns over the XLA:CPU threads of a profile."""
    from jax.profiler import ProfileData

    totals = collections.Counter()
    for plane in ProfileData.from_file(xspace_path).planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue
            for event in line.events:
                if not any(w in event.name for w in WAITS):
                    totals[event.name] += event.duration_ns
    return totals


def profile(args) -> dict:
    import jax

    model_config, config = bench._configs(args.size, args.encoder, "float32", args)
    step, state, images, rng = bench._train_inputs(model_config, config, 1)
    compiled = step.lower(state, images, rng).compile()
    kinds = hlo_kinds(compiled.as_text())
    holder = {"state": state}

    def one_call():
        holder["state"], metrics = compiled(holder["state"], images, rng)
        jax.block_until_ready(metrics)

    one_call()
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        start = time.perf_counter()
        for _ in range(args.steps):
            one_call()
        wall = (time.perf_counter() - start) / args.steps
        jax.profiler.stop_trace()
        path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
        totals = op_times(path)
    per_kind = collections.Counter()
    ops = []
    for name, ns in totals.items():
        kind, shape = kinds.get(name, ("other", "?"))
        per_kind[kind] += ns / args.steps / 1e9
        ops.append({"op": name, "kind": kind, "shape": shape, "s_per_step": ns / args.steps / 1e9})
    ops.sort(key=lambda o: -o["s_per_step"])
    return {"row": f"{args.size}" + ("" if args.encoder == "none" else f"+{args.encoder}"),
            "batch": args.batch, "steps": args.steps, "wall_s_per_step": wall,
            "op_s_per_step": sum(per_kind.values()),
            "kinds_s_per_step": {k: per_kind.get(k, 0.0) for k in KINDS}, "top": ops[:args.top],
            "cpu": bench.cpu_name(), "cores": cpu_env.available_cores()}


def report(result: dict) -> str:
    total = result["op_s_per_step"]
    lines = [f"{result['row']}, batch {result['batch']}, {result['cpu']}, "
             f"{result['cores']} cores: {result['wall_s_per_step']:.3f} s per step (wall), "
             f"{total:.3f} s of operations per step over all threads (XLA's own "
             "convolutions run asynchronously: their time is not attributed)",
             "", "kind                seconds/step   share"]
    for kind, s in result["kinds_s_per_step"].items():
        lines.append(f"{kind:<18} {s:10.3f}   {100 * s / max(total, 1e-12):6.1f}%")
    lines += ["", "top operations      seconds/step  kind            shape"]
    for op in result["top"]:
        lines.append(f"{op['op']:<22} {op['s_per_step']:8.4f}  {op['kind']:<15} {op['shape']}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpu_env.reexec_with_cpu_settings()
    result = profile(args)
    print(report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
