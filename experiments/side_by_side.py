"""The study's PyTorch code and vdm_vae, alternating on this machine, with the floor that the
machine's own speed puts under each train step.

    python experiments/side_by_side.py --study /tmp/VAE-VDM \
        --out experiments/results/side_by_side_cpu.md

For each row (size x encoder, batch 64, 28x28x1) and round it runs, one after the other:
experiments/time_study_code.py (the study's train and reverse step), `python -m vdm_vae.bench`
for the row (its train step, its FLOPs from XLA's cost analysis, and its calibration of the
machine just before and after: a 4096 x 4096 float32 matrix product and a 64 -> 64 3x3
convolution at 28 x 28, batch 64), and the same two calibrations in PyTorch.

The floor: no program computes the row's step faster than its FLOPs at the best of those four
rates, the fastest this machine ran any of them. So the study's median step over that floor is
the most any implementation of the same maths could gain on it here; where it is below 1.5,
1.5x cannot be reached. The floor ignores every memory-bound operation (GroupNorm, activations,
the optimiser), so the real limit is lower still.
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
    from conv_directions import GFLOP, best_seconds  # this folder, on sys.path as a script

    a = torch.randn(4096, 4096)
    x, conv = torch.randn(64, 64, 28, 28), torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    out = {"torch_threads": torch.get_num_threads()}
    with torch.no_grad():
        for name, fn, flops in (("torch_matmul_gflop_per_s", lambda: a @ a, 2 * 4096 ** 3),
                                ("torch_conv_gflop_per_s", lambda: conv(x), GFLOP * 1e9)):
            out[name] = flops / 1e9 / best_seconds(fn, repeats=10)
    return out


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
    rates = {"xla_matmul": max(r["matmul_gflop_per_s"] for r in xla),
             "xla_conv": max(r["conv_gflop_per_s"] for r in xla),
             "torch_matmul": torch_row["torch_matmul_gflop_per_s"],
             "torch_conv": torch_row["torch_conv_gflop_per_s"]}
    gflop = ours_row["train_flops"] / 1e9
    best = max(rates.values())
    floor_s = gflop / best
    study_s, ours_s = study_row["train_step_median_s"], ours_row["train_step_median_s"]
    return {"size": size, "encoder": encoder,
            "study_train_s": study_s, "vdm_vae_train_s": ours_s, "speedup": study_s / ours_s,
            "study_reverse_s": study_row["reverse_step_median_s"],
            "vdm_vae_reverse_s": ours_row["reverse_step_median_s"],
            "gflop_per_step": gflop, "rates_gflop_per_s": rates, "best_rate_gflop_per_s": best,
            "floor_s": floor_s, "max_speedup": study_s / floor_s,
            "study_gflop_per_s": gflop / study_s, "vdm_vae_gflop_per_s": gflop / ours_s,
            "torch": study_row["torch"], "torch_threads": study_row["threads"]}


def verdict(r: dict) -> str:
    if r["speedup"] >= TARGET:
        return f"reached ({r['speedup']:.2f}x)"
    if r["max_speedup"] < TARGET:
        return (f"cannot reach {TARGET}x: even at {r['best_rate_gflop_per_s']:.0f} GFLOP/s, "
                f"the machine's best rate, a step takes {r['floor_s']:.2f} s, and "
                f"{r['study_train_s']:.2f} / {r['floor_s']:.2f} = {r['max_speedup']:.2f}")
    need = r["gflop_per_step"] / (r["study_train_s"] / TARGET)
    return (f"not reached: {TARGET}x needs {need:.0f} GFLOP/s over the whole step, "
            f"{100 * need / r['best_rate_gflop_per_s']:.0f}% of the machine's best rate")


def markdown(rows: list, command: str) -> str:
    from vdm_vae.bench import cpu_name

    first = rows[0]
    lines = [
        "# Side by side with the study's PyTorch code, CPU", "",
        f"Command, from the repository root: `{command}`", "",
        f"Machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, "
        f"{time.strftime('%Y-%m-%d')}; torch {first['torch']} with {first['torch_threads']} "
        "threads (the study), vdm_vae's jax on the same cores; nothing else ran. Batch 64, "
        "28x28x1; each row's two programs ran one after the other, study first. Train step: "
        "median seconds over timed steps after warm-up (vdm_vae: after compiling). Speedup = "
        "study / vdm_vae.", "",
        "Floor: the row's GFLOP per step (XLA's cost analysis of vdm_vae's step; the study "
        "computes the same maths) at the best of four rates measured around the row: XLA and "
        "PyTorch on a 4096 x 4096 float32 matrix product and on a 64 -> 64 3x3 convolution at "
        "28 x 28, batch 64. No implementation is faster than the floor, which ignores every "
        "memory-bound operation; max speedup = study / floor bounds what any code could gain "
        "on the study here.", "",
        "| size | encoder | study s | vdm_vae s | speedup | GFLOP/step | study GFLOP/s | "
        "vdm_vae GFLOP/s | best rate GFLOP/s | floor s | max speedup | 1.5x |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['encoder']} | {r['study_train_s']:.3f} | "
            f"{r['vdm_vae_train_s']:.3f} | {r['speedup']:.2f}x | {r['gflop_per_step']:.1f} | "
            f"{r['study_gflop_per_s']:.0f} | {r['vdm_vae_gflop_per_s']:.0f} | "
            f"{r['best_rate_gflop_per_s']:.0f} | {r['floor_s']:.3f} | {r['max_speedup']:.2f}x | "
            f"{verdict(r)} |")
    lines += ["", "Reverse step (one step of the sampler, batch 64), median seconds:", "",
              "| size | encoder | study s | vdm_vae s | speedup |", "|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['encoder']} | {r['study_reverse_s']:.3f} | "
              f"{r['vdm_vae_reverse_s']:.3f} | "
              f"{r['study_reverse_s'] / r['vdm_vae_reverse_s']:.2f}x |" for r in rows]
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
