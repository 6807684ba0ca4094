"""The GPU check's main.py runs of SVDM + OE: their commands, and what their metrics.jsonl says.

Three runs of configs/svdm_oe.py (benchmarks/gpu_check.py):
- "eval": an evaluation and a checkpoint every 1,000 steps, the study's cadence (its
  scripts/*.sh pass --eval-every 1000 and its Trainer saves in each evaluation), to step 2,100:
  two evaluations, each followed by a logged window;
- "no_eval": a checkpoint every 1,000 steps and no evaluation (steps_per_eval is the run's
  last step), until the check stops it;
- "warm": the "eval" run's programs to step 4 (a save and an evaluation), while the speed
  phase compiles: it fills the persistent compilation cache that the two others then read.
--quick: the smoke config, a step a window, a checkpoint (and in "eval" an evaluation) every
2 steps; "no_eval" stops at step 4, where the loop closes with an evaluation after its last
window.
"""

import json
import os
import statistics
import sys
from typing import List, Optional

RUNS = ("eval", "no_eval", "warm")
EVERY = 1_000
SETTINGS = {  # run: (GPU, --quick) overrides of config.training
    "eval": ("steps_per_eval=1000 stop_at_step=2100", "steps_per_eval=2 stop_at_step=5"),
    "no_eval": ("steps_per_eval=100000", "steps_per_eval=8 stop_at_step=4"),
    "warm": ("steps_per_eval=1000 stop_at_step=4", "steps_per_eval=2 stop_at_step=2"),
}
COMMON = ("num_steps_train=100000 steps_per_logging=100 steps_per_save=1000",
          "num_steps_train=8 steps_per_logging=1 steps_per_save=2")


def every(quick: bool) -> int:
    """The checkpoint (and evaluation) cadence of the runs."""
    return 2 if quick else EVERY


def argv(run: str, quick: bool, workdir: str, data: Optional[str]) -> List[str]:
    """main.py's command line for `run` ("eval", "no_eval" or "warm"), on the MNIST .npz
    `data` (None: the config's data: synthetic images with --quick)."""
    config = "configs/svdm_oe.py:smoke" if quick else "configs/svdm_oe.py"
    fields = f"{COMMON[quick]} {SETTINGS[run][quick]}".split()
    # No TensorBoard files: the device has no TensorFlow, and --quick runs as the device does.
    out = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}"]
    out += [f"--config.training.{kv}" for kv in fields + ["tensorboard=False"]]
    if data:
        out += ["--config.data.source=mnist", f"--config.data.path={os.path.abspath(data)}"]
    return out


def pauses(train_rows: List[dict], eval_steps: set, cadence: int) -> List[dict]:
    """The seconds main.py spent at each multiple of `cadence` outside training steps (the
    checkpoint, and the evaluation where it evaluated): the time from that step's row to the
    next less the next window's steps at that window's own rate (the loop's timer restarts
    after saving and evaluating, so a window's rate leaves them out)."""
    out = []
    for a, b in zip(train_rows, train_rows[1:]):
        if a["step"] % cadence == 0 and b.get("train/steps_per_sec"):
            busy = (b["step"] - a["step"]) / b["train/steps_per_sec"]
            out.append({"step": a["step"], "seconds": b["time"] - a["time"] - busy,
                        "evaluated": a["step"] in eval_steps})
    return out


def _timings(rows: List[dict], match) -> List[dict]:
    """[{"step", key: seconds}] of the rows' keys that `match` (timings the loop may log)."""
    return [{"step": r["step"], k: v} for r in rows for k, v in r.items() if match(k)]


def summary(metrics_path: str, cadence: int = EVERY) -> dict:
    """Steps done, steps/s (each logging window's, their median after the first, and over all
    windows after the first, which holds the compile: pauses included), the pauses at each
    multiple of `cadence`, the evaluation's and checkpoint's seconds where the loop logs them
    (eval/seconds and its parts, checkpoint/seconds: how long the loop waited for a save), and
    the last train and eval bound, from metrics.jsonl."""
    if not os.path.exists(metrics_path):
        return {"steps": 0}
    with open(metrics_path) as f:
        rows = [json.loads(ln) for ln in f if ln.strip()]
    train_rows = [r for r in rows if "train/steps_per_sec" in r]
    evals = [r for r in rows if "eval/bpd" in r]
    windows = [r["train/steps_per_sec"] for r in train_rows]
    out = {"steps": max((r["step"] for r in train_rows), default=0), "evals": len(evals),
           "steps_per_s_windows": [round(w, 3) for w in windows],
           "pauses": pauses(train_rows, {r["step"] for r in evals}, cadence),
           "eval_seconds": _timings(rows, lambda k: k.startswith("eval/seconds")),
           "checkpoint_seconds": _timings(rows, lambda k: k.endswith("seconds") and (
               "checkpoint" in k or "save" in k))}
    if len(train_rows) >= 2:
        first, last = train_rows[0], train_rows[-1]
        out["steps_per_s_after_first_window"] = (
            (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-9))
        out["steps_per_s_window_median"] = statistics.median(windows[1:])
    if train_rows:
        out["last_train_bpd"] = train_rows[-1].get("train/bpd")
    if evals:
        out["last_eval_bpd"] = evals[-1]["eval/bpd"]
    return out
