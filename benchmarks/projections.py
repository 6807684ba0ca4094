"""Wall time of the study's runs, projected from benchmarks/gpu_check.py's measurements.

The study (diegogcerdas/VAE-VDM) trains each model for 100,000 steps at batch 64 and evaluates
every 1,000 steps (its scripts/*.sh pass --eval-every 1000; src/train.py's default is 10,000);
its Trainer saves the checkpoint inside each evaluation. One evaluation
(src/utils/training.py, src/utils/evaluation.py) draws 64 samples at 250 steps from the EMA
model and 64 from the online model, then, on the test set and on 10,000 training images, runs
the EMA model's bound over 156 batches of 64 and FID on 4 batches of 64 samples drawn at 100
steps. Its grid is MVDM, TVDM and SVDM, each with no encoder and with OE, OE++, SE, TE and UE.

Each projection is a row {"code", "what", "seconds" (None if a measurement is missing),
"from", "leaves_out"}: what it was computed from and what it does not hold.
"""

from typing import List, Optional

RUN_STEPS = 100_000
EVERY = 1_000
EVALS = RUN_STEPS // EVERY
STUDY_EVAL_REVERSE_STEPS = 2 * 250 + 2 * 4 * 100  # samples from 2 models + FID on 2 splits
STUDY_EVAL_FORWARDS = 2 * (10_000 // 64)  # the bound on 2 splits, drop_last batches of 64
SIZES = ("mvdm", "tvdm", "svdm")
GRID_ENCODERS = ("none", "oe", "oepp", "se", "te", "ue")
OURS_EVAL = ("ours: the test bound on 20 batches of 64, the encoder's KL, active units and "
             "linear probe, 64 samples and 56 guided ones at 250 steps")
STUDY_EVAL = ("the study's: 1,300 reverse steps and 312 forward passes at batch 64, plus FID's "
              "Inception network and the mutual information")


def _pair(report: dict, size: str, encoder: str) -> dict:
    for row in report.get("turns", {}).get("pairs", []):
        if (row["size"], row["encoder"]) == (size, encoder):
            return row
    return {}


def study_eval_s(report: dict, size: str, encoder: str) -> Optional[float]:
    """One evaluation of the study's, from its measured reverse step and forward pass: the
    sampling and the bound, without FID's Inception network, the mutual information, image
    files, the data loader and the checkpoint."""
    parts = report.get("turns", {}).get("study_eval", {}).get(f"{size}:{encoder}")
    if not parts:
        return None
    return (STUDY_EVAL_REVERSE_STEPS * parts["reverse_step_s"]
            + STUDY_EVAL_FORWARDS * parts["eval_forward_s"])


def eval_pause(report: dict) -> tuple:
    """(seconds, step) of the last evaluation + checkpoint pause that main.py's run with
    evaluation measured (the last: its compile is behind it), or (None, None)."""
    pauses = report.get("train_eval", {}).get("pauses", [])
    evals = [p for p in pauses if p.get("evaluated")]
    return (evals[-1]["seconds"], evals[-1]["step"]) if evals else (None, None)


def _row(code: str, what: str, seconds: Optional[float], source: str, leaves_out: str,
         missing: List[str]) -> dict:
    row = {"code": code, "what": what, "seconds": None if missing else seconds,
           "from": source, "leaves_out": leaves_out}
    if missing:
        row["missing"] = ", ".join(missing)
    return row


def svdm_oe_run(report: dict) -> List[dict]:
    """The study's 100k-step SVDM + OE run at batch 64: ours from main.py's rate and from our
    best step plus the measured pauses; the study's from its step, with and without an
    estimate of its evaluations."""
    train = report.get("train_eval", {})
    rate = train.get("steps_per_s_after_first_window")
    pause, pause_step = eval_pause(report)
    rows = report.get("turns", {}).get("substeps", [])  # the first: the study's batch, 1 a call
    same_batch = [r for r in rows if r["batch"] == rows[0]["batch"] and r.get("step_s")]
    best = min(same_batch, key=lambda r: r["step_s"]) if same_batch else None
    study = _pair(report, "svdm", "oe").get("study_step_s")
    study_eval = study_eval_s(report, "svdm", "oe")
    rows = [_row("vdm_vae", "main.py at the study's cadence", rate and RUN_STEPS / rate,
                 f"main.py's steps/s after its first logging window, with an evaluation and a "
                 f"checkpoint every {EVERY:,} steps ({train.get('evals', 0)} evaluations)",
                 "start-up and compile; the evaluations differ: " + OURS_EVAL + "; "
                 + STUDY_EVAL, [] if rate else ["main.py's run with evaluation"])]
    missing = ([] if best else ["our step at the study's batch"]) + (
        [] if pause else ["a measured evaluation + checkpoint pause"])
    rows.append(_row(
        "vdm_vae", "best step + measured pauses",
        best and pause and RUN_STEPS * best["step_s"] + EVALS * pause,
        (f"our fastest step at batch {best['batch']} ({best['substeps']} per call) x "
         f"{RUN_STEPS:,} + {EVALS} x the evaluation + checkpoint pause at step {pause_step} of "
         "main.py's run") if best and pause
        else "our fastest step at the study's batch and main.py's evaluation + checkpoint pause",
        "the input pipeline and the loop between calls; start-up and compile", missing))
    rows.append(_row("study", "step x 100k", study and RUN_STEPS * study,
                     "the study's step, taking turns with ours",
                     "its evaluations and checkpoints, its data loader",
                     [] if study else ["the study's step"]))
    rows.append(_row("study", "step x 100k + estimated evaluations",
                     study and study_eval and RUN_STEPS * study + EVALS * study_eval,
                     f"the study's step x {RUN_STEPS:,} + {EVALS} x ({STUDY_EVAL_REVERSE_STEPS} "
                     f"reverse steps + {STUDY_EVAL_FORWARDS} forward passes, each measured)",
                     "FID's Inception network, the mutual information, image files, the data "
                     "loader and the checkpoints",
                     ([] if study else ["the study's step"])
                     + ([] if study_eval else ["the study's reverse step and forward pass"])))
    return rows


def grid(report: dict) -> List[dict]:
    """The study's 18 MNIST runs one after the other: per size, the measured rows for no
    encoder and OE; OE++, SE, TE and UE at OE's time."""
    ours = study = 0.0
    study_evals = 0.0
    missing_ours, missing_study, missing_eval = [], [], []
    for size in SIZES:
        for encoder, runs in (("none", 1), ("oe", len(GRID_ENCODERS) - 1)):
            row = _pair(report, size, encoder)
            if row.get("vdm_vae_step_s"):
                ours += runs * RUN_STEPS * row["vdm_vae_step_s"]
            else:
                missing_ours.append(f"{size}:{encoder}")
            if row.get("study_step_s"):
                study += runs * RUN_STEPS * row["study_step_s"]
            else:
                missing_study.append(f"{size}:{encoder}")
            evaluation = study_eval_s(report, size, encoder)
            if evaluation:
                study_evals += runs * EVALS * evaluation
            else:
                missing_eval.append(f"{size}:{encoder}")
    pause, _ = eval_pause(report)
    runs = len(SIZES) * len(GRID_ENCODERS)
    approx = ("OE++, SE, TE and UE at OE's time (UE is OE's network; OE++ differs in w_dim; SE "
              "and TE are smaller encoders, for which OE's time is an upper bound and no "
              "encoder's a lower one)")
    steps_only = "evaluations, checkpoints, the input pipeline and the loop; start-ups"
    return [
        _row("vdm_vae", "18 runs, steps", ours, "our steps at batch 64, 1 per call; " + approx,
             steps_only + "; the gain of several steps per call (the substeps rows)",
             [f"our step ({', '.join(missing_ours)})"] if missing_ours else []),
        _row("vdm_vae", "18 runs, steps + evaluations", pause and ours + runs * EVALS * pause,
             f"the row above + {runs} x {EVALS} x SVDM + OE's evaluation + checkpoint pause "
             "(an upper bound for the smaller sizes)", "the input pipeline and the loop; "
             "start-ups; " + OURS_EVAL,
             ([f"our step ({', '.join(missing_ours)})"] if missing_ours else [])
             + ([] if pause else ["a measured evaluation + checkpoint pause"])),
        _row("study", "18 runs, steps", study, "the study's steps; " + approx, steps_only,
             [f"the study's step ({', '.join(missing_study)})"] if missing_study else []),
        _row("study", "18 runs, steps + estimated evaluations", study + study_evals,
             f"the row above + {EVALS} evaluations a run, each {STUDY_EVAL_REVERSE_STEPS} "
             f"reverse steps + {STUDY_EVAL_FORWARDS} forward passes of its size",
             "FID's Inception network, the mutual information, image files, the data loader "
             "and the checkpoints",
             ([f"the study's step ({', '.join(missing_study)})"] if missing_study else [])
             + ([f"the study's evaluation parts ({', '.join(missing_eval)})"]
                if missing_eval else [])),
    ]


def projections(report: dict) -> dict:
    return {"svdm_oe_run": svdm_oe_run(report), "grid": grid(report)}
