"""gpu_check.md: benchmarks/gpu_check.py's report as markdown, one section per phase."""

from typing import List

from benchmarks import projections


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _ms(seconds) -> str:
    return _fmt(seconds and 1e3 * seconds, "{:.2f}")


def _interval(row: dict, key: str) -> str:
    median, lo, hi = row.get(f"{key}_median"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if median is None:
        return "-"
    bounds = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else " (fewer than 6 rounds)"
    return f"{median:.2f}{bounds}"


def header(report: dict) -> List[str]:
    m = report["machine"]
    lines = ["# GPU check", "", f"Command: `{report['command']}`", "",
             f"Machine: {m.get('nvidia_smi')}; backend {m.get('backend')} "
             f"({', '.join(m.get('devices', []))}), {m.get('cpu')}, {m.get('cores')} cores; "
             f"python {m.get('python')}, jax {m.get('jax')}, jaxlib {m.get('jaxlib')}, flax "
             f"{m.get('flax')}. Wall time {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s "
             "budget." + (" --quick: tiny sizes, the numbers mean nothing." if report["quick"]
                          else ""), "",
             "| phase | time limit s | wall s | result |", "|---|---|---|---|"]
    for p in report["phases"]:
        lines.append(f"| {p['name']} | {_fmt(p.get('limit_s'), '{:.0f}')} | "
                     f"{_fmt(p.get('wall_s'), '{:.0f}')} | {p['result']} |")
    return lines


def turns_section(report: dict) -> List[str]:
    t, study = report["turns"], report["study"]
    lines = ["", "## Our train step and the study's, taking turns", ""]
    if "skipped" in t:
        return lines + [f"Not run: {t['skipped']}."]
    where = (f"the study's code from {study['path']}, torch {t.get('torch')} on "
             f"{t.get('study_device')}" if "skipped" not in study
             else f"the study's code not run: {study['skipped']}")
    if "warm" in report:
        w = report["warm"]
        lines += [f"Beside the compiles, main.py's warm run (the compilation cache of the runs "
                  f"below) ended with exit status {w['returncode']} after {w['wall_s']:.0f} s "
                  "(killed, -9, if still compiling when the rounds began).", ""]
    lines += [f"Float32, batch {t['pairs'][0]['batch']}; {t['rounds_done']} rounds of blocks "
              f"of {t['steps_per_block']} steps, one worker at a time (benchmarks/turns.py); "
              f"{where}. Ratio: the median over rounds of the study's median step over ours, "
              "with its 95% interval.", "",
              "| size | encoder | ours ms/step | study ms/step | study / ours [95%] | rounds |",
              "|---|---|---|---|---|---|"]
    for r in t["pairs"]:
        notes = "; ".join(f"{who}: {r[who]}" for who in ("vdm_vae", "study")
                          if r[who] != "ready")
        lines.append(f"| {r['size']} | {r['encoder']} | {_ms(r['vdm_vae_step_s'])} | "
                     f"{_ms(r['study_step_s'])} | {_interval(r, 'ratio')} | "
                     f"{r.get('rounds', '-')} |" + (f" {notes}" if notes else ""))
    lines += ["", "Our SVDM + OE step by batch and optimiser steps per call (a lax.scan); gain: "
              "images/s over the first row's, per round.", "",
              "| batch | steps per call | ms per step | images/s | gain [95%] | rounds |",
              "|---|---|---|---|---|---|"]
    for r in t["substeps"]:
        lines.append(f"| {r['batch']} | {r['substeps']} | {_ms(r['step_s'])} | "
                     f"{_fmt(r['images_per_s'], '{:.0f}')} | {_interval(r, 'gain')} | "
                     f"{r['rounds']} |" + ("" if r["status"] == "ready" else f" {r['status']}"))
    if t["study_eval"]:
        lines += ["", "The study's evaluation parts (its EMA model, batch "
                  f"{t['pairs'][0]['batch']}); one evaluation estimated as "
                  f"{projections.STUDY_EVAL_REVERSE_STEPS} reverse steps + "
                  f"{projections.STUDY_EVAL_FORWARDS} forward passes.", "",
                  "| size | encoder | reverse step ms | forward pass ms | one evaluation s |",
                  "|---|---|---|---|---|"]
        for key, parts in t["study_eval"].items():
            size, encoder = key.split(":")
            lines.append(f"| {size} | {encoder} | {_ms(parts['reverse_step_s'])} | "
                         f"{_ms(parts['eval_forward_s'])} | "
                         f"{projections.study_eval_s(report, size, encoder):.1f} |")
    return lines


def _logged(timings: List[dict]) -> List[str]:
    """"key: step N X s, ..." for each key of [{"step", key: seconds}]."""
    keys = sorted({k for t in timings for k in t if k != "step"})
    return [f"{k}: " + ", ".join(f"step {t['step']} {t[k]:.2f} s" for t in timings if k in t)
            for k in keys]


def train_section(report: dict, run: str, title: str) -> List[str]:
    t = report[run]
    lines = ["", f"## main.py, SVDM + OE: {title}", ""]
    if "skipped" in t:
        return lines + [f"Not run: {t['skipped']}."]
    pauses = ", ".join(f"step {p['step']}: {p['seconds']:.1f} s"
                       + (" (checkpoint + evaluation)" if p["evaluated"] else " (checkpoint)")
                       for p in t.get("pauses", [])) or "none measured"
    logged = "; ".join(_logged(t.get("eval_seconds", []) + t.get("checkpoint_seconds", [])))
    lines += [f"`python {t['command']}` (data: {t['data']})", "",
              f"{t['steps']} steps in {t['wall_s']:.0f} s wall (start-up and compile included; "
              f"stopped by {t['stopped'] or 'its own exit'}, exit status {t['returncode']}); "
              f"{_fmt(t.get('steps_per_s_after_first_window'), '{:.2f}')} steps/s after the "
              f"first logging window (evaluations in the run: {t.get('evals', 0)}), "
              f"{_fmt(t.get('steps_per_s_window_median'), '{:.2f}')} in the median window "
              f"(training steps only); per window: {t.get('steps_per_s_windows')}. Pauses "
              f"outside training steps: {pauses}." + (f" Logged: {logged}." if logged else "")
              + f" Last train bpd {_fmt(t.get('last_train_bpd'), '{:.3f}')}, last eval bpd "
              f"{_fmt(t.get('last_eval_bpd'), '{:.3f}')}."]
    return lines


def projections_section(report: dict) -> List[str]:
    p = report["projections"]
    lines = ["", "## Projections", "",
             f"The study's runs: {projections.RUN_STEPS:,} steps at batch 64, an evaluation "
             f"and a checkpoint every {projections.EVERY:,} steps (benchmarks/projections.py).",
             "", "| run | code | what | hours | from | leaves out |", "|---|---|---|---|---|---|"]
    for name, rows in (("SVDM + OE", p["svdm_oe_run"]), ("18-run grid", p["grid"])):
        for r in rows:
            hours = (_fmt(r["seconds"] and r["seconds"] / 3600, "{:.2f}") if "missing" not in r
                     else f"- (missing: {r['missing']})")
            lines.append(f"| {name} | {r['code']} | {r['what']} | {hours} | {r['from']} | "
                         f"{r['leaves_out']} |")
    return lines


def sample_section(report: dict) -> List[str]:
    s = report["sample"]
    lines = ["", "## Sampling", ""]
    if "skipped" in s:
        return lines + [f"Not run: {s['skipped']}."]
    return lines + [
        f"{s.get('images')} images at T = {s.get('T')} from the {s.get('params', '?')} "
        f"parameters, {s.get('images_per_call')} per call"
        + (f" ({s['images_done']} done when the time limit stopped it)"
           if s.get("images_done", s.get("images")) != s.get("images") else "")
        + f": {_fmt(s.get('seconds'), '{:.1f}')} s, {_fmt(s.get('images_per_s'), '{:.1f}')} "
        f"images/s (compile {_fmt(s.get('compile_s'), '{:.0f}')} s apart; stopped: "
        f"{s.get('stopped')}). 64 of them: samples.png."]


def bench_section(report: dict) -> List[str]:
    b = report["bench"]
    lines = ["", "## Benchmark", ""]
    if "skipped" in b:
        return lines + [f"Not run: {b['skipped']}."]
    lines += [f"`{b['command']}`; MFU against {report['peak_tflops']:g} TFLOP/s (dense "
              "bfloat16, H100/H200 SXM) for every row. Every column: bench.md.", "",
              "| size | encoder | dtype | images/s | train step ms | train MFU | reverse step ms "
              "| sample MFU |", "|---|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        if "size" not in r:
            continue
        lines.append(
            f"| {r['size']} | {r['encoder']} | {r.get('compute_dtype')} | "
            f"{_fmt(r.get('images_per_s'), '{:.0f}')} | {_ms(r.get('train_step_median_s'))} | "
            f"{_fmt(r.get('train_mfu'), '{:.1%}')} | {_ms(r.get('reverse_step_median_s'))} | "
            f"{_fmt(r.get('sample_mfu'), '{:.1%}')} |"
            + (f" not run: {r['skipped']}" if "skipped" in r else ""))
    return lines


def markdown(report: dict) -> str:
    lines = (header(report) + turns_section(report)
             + train_section(report, "train_eval", "an evaluation and a checkpoint every "
                             f"{report['cadence']:,} steps (the study's cadence)")
             + train_section(report, "train_no_eval", "checkpoints only")
             + projections_section(report) + sample_section(report) + bench_section(report))
    return "\n".join(lines) + "\n"
