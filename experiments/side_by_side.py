"""The study's PyTorch code and vdm_vae, alternating on this machine, with the floors that the
machine's own speed puts under each train step.

    python experiments/side_by_side.py --study /tmp/VAE-VDM \
        --out experiments/results/side_by_side_cpu.md

For each row (size x encoder, batch 64, 28x28x1) and round it runs, one after the other:
experiments/time_study_code.py (the study's train and reverse step), `python -m vdm_vae.bench`
for the row (its train step, its FLOPs from XLA's cost analysis, and its calibration of the
machine just before and after: a 4096 x 4096 float32 matrix product and a 64 -> 64 3x3
convolution at 28 x 28, batch 64), the same two calibrations in PyTorch, and
experiments/conv_floor.py in XLA and in PyTorch (every convolution of the row's step, timed
alone in each direction the step computes).

Three floors, each a time under which the row's step cannot run:
- machine: the step's FLOPs at the best of the four calibration rates. Ignores what each kind
  of operation reaches and every memory-bound operation: no code on this machine is faster.
- libraries: the step's convolutions, each direction at the faster of XLA's and PyTorch's time
  for its shape, plus the rest of its FLOPs at the best matrix-product rate. No program built
  on either library's convolution kernels is faster (a hand-written kernel faster than both at
  these shapes is not excluded).
- XLA: the same with XLA's convolution times, the convolution a JAX program has on CPU. No
  JAX program that computes the step's convolutions with XLA's is faster. Never below the
  libraries' floor.
Max speedup = the study's median step over a floor: where it is below 1.5, 1.5x cannot be
reached under that floor's terms.

Beside the floors, a measurement of what they leave out: the rest of the step as XLA runs it
(experiments/step_without_convs.py: our step with every convolution replaced by a stand-in
that does none of its work). Where XLA's convolutions timed alone plus that rest add up to our
step, the two say how the step's time divides; the sum is not a floor (XLA may overlap or fuse
the two differently in the real step, and a faster formulation of the rest is not excluded).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = "mvdm:none,mvdm:oe,tvdm:none,tvdm:oe,svdm:none,svdm:oe"
TARGET = 1.5


def torch_rates() -> dict:
    """PyTorch's best GFLOP/s on the calibration matrix product and convolution."""
    import torch
    from conv_directions import GFLOP  # this folder, on sys.path as a script
    from conv_floor import best_seconds

    a = torch.randn(4096, 4096)
    x, conv = torch.randn(64, 64, 28, 28), torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    out = {"torch_threads": torch.get_num_threads()}
    with torch.no_grad():
        for name, fn, flops in (("torch_matmul_gflop_per_s", lambda: a @ a, 2 * 4096 ** 3),
                                ("torch_conv_gflop_per_s", lambda: conv(x), GFLOP * 1e9)):
            out[name] = flops / 1e9 / best_seconds(fn, repeats=10)
    return out


def conv_times(size: str, encoder: str) -> list:
    """The row's convolutions (experiments/conv_floor.py), each with its seconds per direction
    in XLA ("jax") and in PyTorch ("torch")."""
    import tempfile

    script = os.path.join("experiments", "conv_floor.py")
    row = ["--size", size, "--encoder", encoder]
    jax_line, = _json_lines([sys.executable, script, *row, "--library", "jax"])
    convs = jax_line["convs"]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([{k: v for k, v in c.items() if k != "seconds"} for c in convs], f)
        f.flush()
        torch_line, = _json_lines([sys.executable, script, *row, "--library", "torch",
                                   "--convs", f.name])
    for conv, timed_in_torch in zip(convs, torch_line["convs"]):
        conv["seconds"] = {"jax": conv["seconds"], "torch": timed_in_torch["seconds"]}
    return convs


def conv_floors(convs: list, gflop: float, matmul_rate: float) -> dict:
    """The libraries' and XLA's floors of a step of `gflop` GFLOP whose convolutions are
    `convs` (conv_times): its convolutions at the faster library's / at XLA's times, the
    rest of its FLOPs at `matmul_rate` GFLOP/s."""
    conv_gflop = sum(c["count"] * c["gflop"] * len(c["directions"]) for c in convs)
    xla_s = sum(c["count"] * sum(c["seconds"]["jax"].values()) for c in convs)
    best_s = sum(c["count"] * sum(min(c["seconds"]["jax"][d], c["seconds"]["torch"][d])
                                  for d in c["directions"]) for c in convs)
    rest_s = max(gflop - conv_gflop, 0.0) / matmul_rate
    return {"conv_gflop_per_step": conv_gflop, "xla_conv_s": xla_s, "best_conv_s": best_s,
            "rest_s": rest_s, "libraries_floor_s": best_s + rest_s,
            "xla_floor_s": xla_s + rest_s}


def _json_lines(cmd) -> list:
    """Runs cmd from the repository root and returns the JSON objects it printed."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def measure_row(study: str, size: str, encoder: str, repeats: int) -> dict:
    """One round of one row: the study's step, ours with its FLOPs, and the four rates."""
    study_row, = _json_lines([sys.executable, "experiments/time_study_code.py", "--study", study,
                              "--size", size, "--encoder", encoder, "--repeats", str(repeats)])
    ours = _json_lines([sys.executable, "-m", "vdm_vae.bench", "--sizes", size, "--encoders",
                        encoder, "--repeats", str(repeats), "--sample-steps", "2",
                        "--sample-repeats", "2"])
    ours_row, = [r for r in ours if r.get("size") == size]
    xla = [r for r in ours if "matmul_gflop_per_s" in r]
    torch_row, = _json_lines([sys.executable, __file__, "--torch-rates"])
    convs = conv_times(size, encoder)
    rest, = _json_lines([sys.executable, "experiments/step_without_convs.py", "--size", size,
                         "--encoder", encoder, "--repeats", str(repeats)])
    rates = {"xla_matmul": max(r["matmul_gflop_per_s"] for r in xla),
             "xla_conv": max(r["conv_gflop_per_s"] for r in xla),
             "torch_matmul": torch_row["torch_matmul_gflop_per_s"],
             "torch_conv": torch_row["torch_conv_gflop_per_s"]}
    gflop = ours_row["train_flops"] / 1e9
    best = max(rates.values())
    floor_s = gflop / best
    study_s, ours_s = study_row["train_step_median_s"], ours_row["train_step_median_s"]
    floors = conv_floors(convs, gflop, max(rates["xla_matmul"], rates["torch_matmul"]))
    rest_s = rest["rest_step_median_s"]
    return {"size": size, "encoder": encoder, **floors, "convs": convs,
            "rest_as_run_s": rest_s, "xla_with_rest_s": floors["xla_conv_s"] + rest_s,
            "study_train_s": study_s, "vdm_vae_train_s": ours_s, "speedup": study_s / ours_s,
            "study_reverse_s": study_row["reverse_step_median_s"],
            "vdm_vae_reverse_s": ours_row["reverse_step_median_s"],
            "gflop_per_step": gflop, "rates_gflop_per_s": rates, "best_rate_gflop_per_s": best,
            "floor_s": floor_s, "max_speedup": study_s / floor_s,
            "study_gflop_per_s": gflop / study_s, "vdm_vae_gflop_per_s": gflop / ours_s,
            "torch": study_row["torch"], "torch_threads": study_row["threads"]}


FLOORS = ("floor_s", "libraries_floor_s", "xla_floor_s")  # machine, libraries, XLA


def verdict(r: dict) -> str:
    """Whether the row reached TARGET, and if not, the loosest floor that rules it out."""
    study = r["study_train_s"]
    if r["speedup"] >= TARGET:
        return f"reached ({r['speedup']:.2f}x)"
    why = {
        "floor_s": (f"on this machine: its {r['gflop_per_step']:.0f} GFLOP at "
                    f"{r['best_rate_gflop_per_s']:.0f} GFLOP/s, the best rate measured"),
        "libraries_floor_s": (f"with XLA's or PyTorch's convolutions: the step's convolutions "
                              f"alone take {r['best_conv_s']:.2f} s at the faster library's "
                              f"time for each, the rest of its FLOPs {r['rest_s']:.2f} s"),
        "xla_floor_s": (f"with XLA's convolutions: the step's convolutions alone take "
                        f"{r['xla_conv_s']:.2f} s in XLA ({r['best_conv_s']:.2f} s at the "
                        f"faster library's), the rest of its FLOPs {r['rest_s']:.2f} s")}
    for key in FLOORS:
        if study / r[key] < TARGET:
            return (f"cannot reach {TARGET}x {why[key]}: a step takes at least {r[key]:.2f} s, "
                    f"and {study:.2f} / {r[key]:.2f} = {study / r[key]:.2f}")
    missed = (f"not reached: {TARGET}x needs a step of {study / TARGET:.2f} s; the XLA floor "
              f"is {r['xla_floor_s']:.2f} s")
    if "xla_with_rest_s" not in r:
        return missed
    return (f"{missed}; the step's convolutions take {r['xla_conv_s']:.2f} s alone in XLA, the "
            f"step without them {r['rest_as_run_s']:.2f} s")


def _conv_lines(rows: list) -> list:
    """One line per distinct convolution of each row: XLA's and PyTorch's GFLOP/s."""
    lines = ["| size | encoder | input -> output channels | count | directions | "
             "XLA GFLOP/s (forward / input grad / kernel grad) | PyTorch GFLOP/s |",
             "|---|---|---|---|---|---|---|"]

    def rates(conv, library):
        return " / ".join(f"{conv['gflop'] / conv['seconds'][library][d]:.0f}"
                          if d in conv["directions"] else "-"
                          for d in ("forward", "input_gradient", "kernel_gradient"))

    for r in rows:
        for c in r["convs"]:
            kh, kw, i, o = c["kernel"]
            lines.append(f"| {r['size']} | {r['encoder']} | {kh}x{kw}, {i} -> {o} | {c['count']} "
                         f"| {len(c['directions'])} | {rates(c, 'jax')} | {rates(c, 'torch')} |")
    return lines


def markdown(rows: list, command: str) -> str:
    from vdm_vae.bench import cpu_name

    first = rows[0]
    lines = [
        "# Side by side with the study's PyTorch code, CPU", "",
        f"Command, from the repository root: `{command}`", "",
        f"Machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, "
        f"{time.strftime('%Y-%m-%d')}; torch {first['torch']} with {first['torch_threads']} "
        "threads (the study), vdm_vae's jax on the same cores; nothing else ran. Batch 64, "
        "28x28x1; each row's programs ran one after the other, study first. Train step: "
        "median seconds over timed steps after warm-up (vdm_vae: after compiling). Speedup = "
        "study / vdm_vae.", "",
        "Floors (`experiments/side_by_side.py`'s docstring), each a time under which the row's "
        "step cannot run, from the step's GFLOP (XLA's cost analysis of vdm_vae's step; the "
        "study computes the same maths) and rates measured around the row: *machine*, the "
        "whole step at the best of four calibration rates (XLA and PyTorch, a 4096 x 4096 "
        "float32 matrix product and a 64 -> 64 3x3 convolution at 28 x 28, batch 64); "
        "*libraries*, every convolution of the step timed alone in each direction the step "
        "computes (`experiments/conv_floor.py`) at the faster of XLA and PyTorch, plus the "
        "rest of the FLOPs at the best matrix-product rate; *XLA*, the same with XLA's "
        "convolutions, the ones a JAX program has on CPU. All three ignore every memory-bound "
        "operation (GroupNorm, activations, the optimiser, copies). Max speedup = study / "
        "floor. *XLA + rest as run*: XLA's convolutions timed alone plus our step with every "
        "convolution replaced by a stand-in that does none of its work "
        "(`experiments/step_without_convs.py`), a measurement, not a floor.", "",
        "| size | encoder | study s | vdm_vae s | speedup | GFLOP/step | of which convolution "
        "| floor s: machine / libraries / XLA | max speedup: machine / libraries / XLA "
        "| XLA + rest as run s (max speedup) | 1.5x |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        with_rest = (f"{r['xla_conv_s']:.3f} + {r['rest_as_run_s']:.3f} "
                     f"({r['study_train_s'] / r['xla_with_rest_s']:.2f}x)"
                     if "xla_with_rest_s" in r else "-")
        lines.append(
            f"| {r['size']} | {r['encoder']} | {r['study_train_s']:.3f} | "
            f"{r['vdm_vae_train_s']:.3f} | {r['speedup']:.2f}x | {r['gflop_per_step']:.1f} | "
            f"{r['conv_gflop_per_step']:.1f} | "
            + " / ".join(f"{r[k]:.3f}" for k in FLOORS) + " | "
            + " / ".join(f"{r['study_train_s'] / r[k]:.2f}x" for k in FLOORS)
            + f" | {with_rest} | {verdict(r)} |")
    lines += ["", "Reverse step (one step of the sampler, batch 64), median seconds:", "",
              "| size | encoder | study s | vdm_vae s | speedup |", "|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['encoder']} | {r['study_reverse_s']:.3f} | "
              f"{r['vdm_vae_reverse_s']:.3f} | "
              f"{r['study_reverse_s'] / r['vdm_vae_reverse_s']:.2f}x |" for r in rows]
    lines += ["", "The convolutions of each row's step as vdm_vae computes them (an up block's "
              "convolution of [h, skip] as one per part), each timed alone in GFLOP/s, best of "
              "10 calls after half a second of calls, in a process that has first run the "
              "64 -> 64 calibration convolution (`experiments/conv_floor.py`); count: how many "
              "the step has; directions: how many of forward, input gradient (not for a "
              "convolution of the data) and kernel gradient it computes:", ""] + _conv_lines(rows)
    lines += ["", "The rates measured around each row (GFLOP/s):", "",
              "| size | encoder | XLA matmul | XLA conv | torch matmul | torch conv |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['encoder']} | " + " | ".join(
        f"{r['rates_gflop_per_s'][k]:.0f}" for k in
        ("xla_matmul", "xla_conv", "torch_matmul", "torch_conv")) + " |" for r in rows]
    lines += ["", "The JSON of every row:", "", "```"]
    lines += [json.dumps(r) for r in rows] + ["```", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", help="root of a checkout of diegogcerdas/VAE-VDM")
    p.add_argument("--rows", default=ROWS, help="size:encoder pairs, comma-separated")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timed train steps per program")
    p.add_argument("--out", help="markdown file to write")
    p.add_argument("--torch-rates", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_rates:
        print(json.dumps(torch_rates()), flush=True)
        return
    if not args.study:
        p.error("--study is required: the root of a checkout of diegogcerdas/VAE-VDM")
    rows = []
    for pair in args.rows.split(","):
        size, encoder = pair.split(":")
        for _ in range(args.rounds):
            rows.append(measure_row(args.study, size, encoder, args.repeats))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        command = "python experiments/side_by_side.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        with open(args.out, "w") as f:
            f.write(markdown(rows, command))
        print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
