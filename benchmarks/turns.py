"""Our train step and the study's on one device: every worker built at once, then timed in
rounds, one block at a time. The speed phase of benchmarks/gpu_check.py.

Each worker is a live process of benchmarks/interleaved.py (`--worker`) holding one compiled
step: ours (benchmarks/bench.py's, float32) or the study's PyTorch step
(benchmarks/time_study_code.py). They all build at the same time (the compiles take most of
the phase), then take turns: in each round every worker runs one block of `steps` optimiser
steps while the others wait on their stdin. A pair row is ours and the study's step at one
size and encoder, in the order ours-study in even rounds and study-ours in odd ones; its ratio
in a round is the study's median step over ours. A substeps row is our SVDM + OE step at
another batch or number of optimiser steps per call; its gain in a round is its images/s over
the reference row's (batch 64, 1 step per call: the SVDM + OE pair row's own block). Each row
gives the median over rounds with benchmarks/interleaved.py's distribution-free 95% interval
(from 6 rounds on). Last, the study's workers time its reverse step and its evaluation forward
pass, for the cost of its periodic evaluation.
"""

import dataclasses
import json
import os
import queue
import statistics
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

from benchmarks import interleaved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = ("svdm:oe", "svdm:none", "tvdm:oe", "tvdm:none", "mvdm:oe", "mvdm:none")
SUBSTEPS = ((64, 1), (64, 4), (64, 16), (256, 1), (256, 4), (256, 16))  # (batch, substeps)
QUICK_PAIRS = ("svdm:oe",)
QUICK_SUBSTEPS = ((8, 1), (16, 2))


@dataclasses.dataclass(frozen=True)
class Spec:
    """One worker: a program's train step at a size, encoder, batch and substeps per call."""
    program: str  # "vdm_vae" (ours) or "study"
    size: str
    encoder: str
    batch: int
    substeps: int = 1

    @property
    def name(self) -> str:
        return f"{self.program}:{self.size}:{self.encoder}:b{self.batch}:s{self.substeps}"


def plan(quick: bool, with_study: bool) -> tuple:
    """(pairs, extras): pairs [(ours Spec, study Spec or None)], the SVDM + OE pair first;
    extras: the substeps rows other than the reference (the first pair's ours)."""
    names, substeps = (QUICK_PAIRS, QUICK_SUBSTEPS) if quick else (PAIRS, SUBSTEPS)
    batch = substeps[0][0]
    pairs = []
    for name in names:
        size, encoder = name.split(":")
        study = Spec("study", size, encoder, batch) if with_study else None
        pairs.append((Spec("vdm_vae", size, encoder, batch), study))
    extras = [Spec("vdm_vae", "svdm", "oe", b, s) for b, s in substeps[1:]]
    return pairs, extras


class Worker:
    """A live worker process and a queue of the JSON lines it prints."""

    def __init__(self, spec: Spec, study: Optional[str], smoke: bool, env: dict, log_path: str):
        self.spec, self.log_path, self.status = spec, log_path, "building"
        self.device = self.torch = None  # the study's, from its ready line
        argv = interleaved.worker_argv(spec.program, spec.size, spec.encoder, spec.batch,
                                       study if spec.program == "study" else None, smoke,
                                       spec.substeps)
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log,
                                         env=interleaved.worker_env(spec.program, env))
        self.replies = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.replies.put(json.loads(line))
        self.replies.put(None)  # the process ended

    def reply(self, timeout: float) -> Optional[dict]:
        """The next JSON line, or None if the process ended or `timeout` passed first."""
        try:
            return self.replies.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return None

    def ask(self, line: str, timeout: float) -> Optional[dict]:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self.reply(timeout)

    def why_not(self) -> str:
        """Why the worker gave no answer: its exit status and the last line of its log."""
        code = self.proc.poll()
        if code is None:
            return "time limit"
        with open(self.log_path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return f"failed (exit {code}: {(lines or ['no output'])[-1][:160]})"

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_ready(workers: List[Worker], ready_by: float):
    """Sets each worker's status to "ready" or why not by `ready_by` (those not ready are
    stopped: their compiles would slow the timed blocks)."""
    for w in workers:
        reply = w.reply(ready_by - time.monotonic())
        w.status = "ready" if reply and "ready" in reply else w.why_not()
        if w.status == "time limit":
            w.proc.kill()
        elif reply:
            w.device, w.torch = reply.get("device"), reply.get("torch")


def take_turns(pairs: list, extras: list, workers: Dict[Spec, Worker], rounds: int,
               steps: int, deadline: float) -> List[dict]:
    """Blocks [{"round", "worker", "seconds": per optimiser step}], round after round, until
    `rounds` or until another round would pass `deadline`."""
    blocks = []
    for r in range(rounds):
        start = time.monotonic()
        order = []
        for ours, study in pairs:
            order += [ours, study] if r % 2 == 0 else [study, ours]
        for spec in order + list(extras):
            w = workers.get(spec)
            if w is None or w.status != "ready":
                continue
            reply = w.ask(str(max(1, steps // spec.substeps)), deadline + 60 - time.monotonic())
            if reply is None or "seconds" not in reply:
                w.status = w.why_not()
                continue
            blocks.append({"round": r, "worker": spec.name,
                           "seconds": [s / spec.substeps for s in reply["seconds"]]})
        now = time.monotonic()
        if now + (now - start) > deadline:  # another round would not end in time
            break
    return blocks


def _median(blocks: List[dict], name: str, r: Optional[int] = None) -> Optional[float]:
    seconds = [s for b in blocks if b["worker"] == name and r in (None, b["round"])
               for s in b["seconds"]]
    return statistics.median(seconds) if seconds else None


def _interval(values: List[float]) -> dict:
    """Median of the per-round values and its 95% interval (None below 6 rounds)."""
    if not values:
        return {"median": None, "lo": None, "hi": None, "rounds": 0}
    lo, hi = interleaved.median_interval(values)
    bounded = len(values) >= 6
    return {"median": statistics.median(values), "lo": lo if bounded else None,
            "hi": hi if bounded else None, "rounds": len(values)}


def per_round(blocks: List[dict], a: Spec, b: Spec, value: Callable) -> List[float]:
    """value(a's median step, b's median step) in each round where both ran."""
    out = []
    for r in sorted({blk["round"] for blk in blocks}):
        ma, mb = _median(blocks, a.name, r), _median(blocks, b.name, r)
        if ma and mb:
            out.append(value(ma, mb))
    return out


def summarise(pairs: list, extras: list, workers: Dict[Spec, Worker],
              blocks: List[dict]) -> dict:
    """The pair rows (ours and the study's step, the study's over ours per round) and the
    substeps rows (images/s of each over the reference row's, per round)."""
    pair_rows = []
    for ours, study in pairs:
        row = {"size": ours.size, "encoder": ours.encoder, "batch": ours.batch,
               "vdm_vae_step_s": _median(blocks, ours.name), "vdm_vae": workers[ours].status,
               "study_step_s": None, "study": workers[study].status if study else "skipped"}
        if study:
            row["study_step_s"] = _median(blocks, study.name)
            ratio = _interval(per_round(blocks, study, ours, lambda s, o: s / o))
            row.update({f"ratio_{k}" if k != "rounds" else k: v for k, v in ratio.items()})
        pair_rows.append(row)
    reference = pairs[0][0]
    substeps_rows = []
    for spec in [reference] + list(extras):
        step = _median(blocks, spec.name)
        gain = _interval(per_round(blocks, spec, reference,
                                   lambda s, r, b=spec.batch: (b / s) / (reference.batch / r)))
        substeps_rows.append({"batch": spec.batch, "substeps": spec.substeps, "step_s": step,
                              "images_per_s": spec.batch / step if step else None,
                              "status": workers[spec].status,
                              **{f"gain_{k}" if k != "rounds" else k: v
                                 for k, v in gain.items()}})
    return {"pairs": pair_rows, "substeps": substeps_rows}


def study_eval(pairs: list, workers: Dict[Spec, Worker], repeats: int,
               deadline: float) -> dict:
    """{"size:encoder": {"reverse_step_s", "eval_forward_s"}}: medians of `repeats` of the
    study's reverse step and evaluation forward pass, from each ready study worker."""
    out = {}
    for _, study in pairs:
        w = workers.get(study)
        if w is None or w.status != "ready" or time.monotonic() > deadline:
            continue
        reply = w.ask(f"eval {repeats}", deadline + 30 - time.monotonic())
        if reply and "reverse_seconds" in reply:
            out[f"{study.size}:{study.encoder}"] = {
                "reverse_step_s": statistics.median(reply["reverse_seconds"]),
                "eval_forward_s": statistics.median(reply["forward_seconds"])}
    return out


def run(quick: bool, study: Optional[str], seconds: float, log_dir: str, rounds: int,
        steps: int, ready_s: float, before_timing: Callable = lambda ready_by: None) -> dict:
    """The phase: builds every worker (study=None: ours only) in `ready_s` at most, calls
    before_timing(ready_by), takes turns until the rounds are done or `seconds` pass, and
    returns the rows, the blocks and each worker's status."""
    start = time.monotonic()
    deadline, ready_by = start + seconds, start + min(ready_s, seconds)
    pairs, extras = plan(quick, study is not None)
    specs = [s for pair in pairs for s in pair if s] + list(extras)
    # Many jax processes share the GPU: each allocates as it goes instead of taking most of it.
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    # --quick, on a CPU that other work keeps busy: the study's tiny step on one thread (with
    # two, torch's threads wait on each other and a step takes ten times as long).
    study_env = dict(env, OMP_NUM_THREADS="1") if quick else env
    workers = {}
    try:
        for spec in specs:
            log = os.path.join(log_dir, spec.name.replace(":", "_") + ".log")
            workers[spec] = Worker(spec, study, quick,
                                   study_env if spec.program == "study" else env, log)
        wait_ready(list(workers.values()), ready_by)
        before_timing(ready_by)
        blocks = take_turns(pairs, extras, workers, rounds, steps, deadline)
        evals = study_eval(pairs, workers, 5, deadline)
    finally:
        for w in workers.values():
            w.close()
    studies = [w for w in workers.values() if w.torch]
    return {"wall_s": time.monotonic() - start, "rounds_done": len({b["round"] for b in blocks}),
            "steps_per_block": steps, "workers": {s.name: w.status for s, w in workers.items()},
            "study_device": studies[0].device if studies else None,
            "torch": studies[0].torch if studies else None, "study_eval": evals,
            **summarise(pairs, extras, workers, blocks), "blocks": blocks}
