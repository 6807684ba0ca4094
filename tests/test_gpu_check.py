"""benchmarks/gpu_check.sh: the --quick run on this CPU, and the parts it is made of."""

import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from conftest import ROOT, load_experiment

FILES = {"gpu_check.json", "gpu_check.md", "logs.txt", "samples.png", "bench.md"}
PHASES = ["turns", "train_eval", "train_no_eval", "sample", "bench"]


@pytest.fixture(scope="module")
def gpu_check():
    return load_experiment("gpu_check", "benchmarks")


def _tiny_mnist(path):
    rng = np.random.default_rng(0)
    np.savez_compressed(path, train_images=rng.integers(0, 256, (64, 8, 8, 1), np.uint8),
                        train_labels=rng.integers(0, 10, 64),
                        test_images=rng.integers(0, 256, (16, 8, 8, 1), np.uint8),
                        test_labels=rng.integers(0, 10, 16))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """(out folder, report) of one --quick run, shared by the tests that read it. It times the
    study's step too where .gpu/study (or $VDM_VAE_STUDY) and torch, diffusers and ema_pytorch
    are there (python benchmarks/gpu_check.py --prepare --study=PATH)."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    data, out = tmp / "mnist.npz", tmp / "out"
    _tiny_mnist(data)
    result = subprocess.run([os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--quick",
                             "--data", str(data)], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, OUT=str(out)), timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out / "gpu_check.json") as f:
        return out, json.load(f), str(data)


def test_quick_check_runs_every_phase_and_writes_what_the_device_sends_back(quick):
    out, report, data = quick
    assert set(os.listdir(out)) == FILES  # the device returns at most 8 files of 16 MiB
    assert all(os.path.getsize(out / f) < 16 * 2**20 for f in FILES)
    assert [p["name"] for p in report["phases"]] == PHASES
    assert all(p["result"] == "done" for p in report["phases"])
    assert report["machine"]["backend"] == "cpu" and report["machine"]["jax"]
    turns = report["turns"]
    ours, = turns["pairs"]
    assert (ours["size"], ours["encoder"], ours["batch"]) == ("svdm", "oe", 8)
    assert ours["vdm_vae_step_s"] > 0 and turns["rounds_done"] == 6
    assert [(r["batch"], r["substeps"]) for r in turns["substeps"]] == [(8, 1), (16, 2)]
    assert all(r["step_s"] > 0 and r["gain_median"] > 0 for r in turns["substeps"])
    assert report["warm"]["returncode"] == 0  # main.py's cache-filling run beside the workers
    with_eval, no_eval = report["train_eval"], report["train_no_eval"]
    assert (with_eval["returncode"], with_eval["steps"], with_eval["data"]) == (0, 5, data)
    assert [(p["step"], p["evaluated"]) for p in with_eval["pauses"]] == [(2, True), (4, True)]
    assert with_eval["steps_per_s_after_first_window"] > 0
    assert (no_eval["returncode"], no_eval["steps"]) == (0, 4)
    assert [(p["step"], p["evaluated"]) for p in no_eval["pauses"]] == [(2, False)]
    sample = report["sample"]
    assert (sample["params"], sample["images"], sample["T"]) == ("checkpoint", 16, 10)
    assert (sample["images_done"], sample["images_per_call"]) == (16, 8)
    assert [(r["size"], r["compute_dtype"]) for r in report["bench"]["rows"]] == [
        ("mvdm", "float32")]
    one_run = {r["what"]: r for r in report["projections"]["svdm_oe_run"]}
    assert one_run["main.py at the study's cadence"]["seconds"] > 0
    assert one_run["best step + measured pauses"]["seconds"] > 0
    md = (out / "gpu_check.md").read_text()
    for heading in ("## Our train step and the study's", "## main.py, SVDM + OE",
                    "## Projections", "## Sampling", "## Benchmark"):
        assert heading in md
    assert "16 images at T = 10" in md and "done when the time limit stopped it" not in md
    logs = (out / "logs.txt").read_text()
    for log in ("warm", "eval", "no_eval", "sample", "bench"):
        assert f"===== {log}.log =====" in logs


def test_quick_check_times_the_study_step_taking_turns_with_ours(quick):
    _, report, _ = quick
    if "skipped" in report["study"]:
        pytest.skip(f"the study's phase was skipped: {report['study']['skipped']}")
    row, = report["turns"]["pairs"]
    assert row["study"] == "ready" and row["study_step_s"] > 0
    assert row["rounds"] == 6 and 0 < row["ratio_lo"] <= row["ratio_median"] <= row["ratio_hi"]
    parts = report["turns"]["study_eval"]["svdm:oe"]
    assert parts["reverse_step_s"] > 0 and parts["eval_forward_s"] > 0
    study = [r for r in report["projections"]["svdm_oe_run"] if r["code"] == "study"]
    assert len(study) == 2 and all(r["seconds"] > 0 for r in study)


def test_the_study_is_skipped_with_its_reason_where_its_checkout_is_missing(gpu_check,
                                                                             tmp_path):
    args = types.SimpleNamespace(study=str(tmp_path))
    assert "no checkout of the study's code" in gpu_check.find_study(args)["skipped"]


def test_limits_are_named_and_checked(gpu_check):
    args = gpu_check.parse_args(["--limit", "turns=120", "--out", "x"])
    assert args.limits["turns"] == 120 and args.limits["train_eval"] == 150
    assert args.budget_s == 470
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--limit", "train=5"])


def test_warm_run_compiles_what_the_run_with_evaluation_runs():
    main_runs = load_experiment("main_runs", "benchmarks")
    for quick in (False, True):
        warm = main_runs.argv("warm", quick, "w", None)
        evaluated = main_runs.argv("eval", quick, "w", None)
        differ = sorted(set(warm) ^ set(evaluated))
        assert all("stop_at_step" in a for a in differ), differ


def _child(tmp_path, on_term: str):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys, time
        def term(*_):
            {on_term}
        signal.signal(signal.SIGTERM, term)
        print("started", flush=True)
        time.sleep(60)
    """))
    return [sys.executable, str(script)]


def test_run_for_stops_with_sigterm_and_lets_the_program_save(gpu_check, tmp_path):
    log = tmp_path / "log"
    result = gpu_check.run_for(_child(tmp_path, 'print("saved", flush=True); sys.exit(0)'),
                               1.0, str(log), grace_s=30)
    assert (result["stopped"], result["returncode"]) == ("SIGTERM", 0)
    assert log.read_text().split() == ["started", "saved"]


def test_run_for_kills_a_program_that_ignores_sigterm(gpu_check, tmp_path):
    result = gpu_check.run_for(_child(tmp_path, "pass"), 1.0, str(tmp_path / "log"),
                               grace_s=1.0)
    assert result["stopped"] == "SIGKILL" and result["returncode"] != 0
    assert result["wall_s"] < 30


def test_training_summary_leaves_the_first_window_out_and_measures_pauses(tmp_path):
    main_runs = load_experiment("main_runs", "benchmarks")
    rows = [{"step": 100, "time": 50.0, "train/steps_per_sec": 2.0, "train/bpd": 3.0},
            {"step": 200, "time": 60.0, "train/steps_per_sec": 10.0, "train/bpd": 2.0},
            {"step": 200, "time": 61.0, "checkpoint/seconds": 0.5},
            {"step": 200, "time": 65.0, "eval/bpd": 2.5, "eval/seconds": 7.0,
             "eval/seconds_bound": 1.0, "eval/cpu_seconds": 9.0},
            {"step": 300, "time": 80.0, "train/steps_per_sec": 10.0, "train/bpd": 1.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = main_runs.summary(str(tmp_path / "metrics.jsonl"), cadence=200)
    assert summary["steps"] == 300 and summary["evals"] == 1
    assert summary["steps_per_s_after_first_window"] == pytest.approx(200 / 30)
    assert summary["steps_per_s_window_median"] == pytest.approx(10.0)
    # 20 s from the row of step 200 to that of 300, whose 100 steps took 10 s at 10 steps/s
    assert summary["pauses"] == [{"step": 200, "seconds": pytest.approx(10.0),
                                  "evaluated": True}]
    assert summary["eval_seconds"] == [{"step": 200, "eval/seconds": 7.0},
                                       {"step": 200, "eval/seconds_bound": 1.0}]
    assert summary["checkpoint_seconds"] == [{"step": 200, "checkpoint/seconds": 0.5}]
    assert (summary["last_train_bpd"], summary["last_eval_bpd"]) == (1.5, 2.5)
    assert main_runs.summary(str(tmp_path / "missing.jsonl")) == {"steps": 0}


def _report(study_step=0.05, ours_step=0.02, pause=4.0, rate=30.0):
    pairs = [{"size": s, "encoder": e, "vdm_vae_step_s": ours_step, "study_step_s": study_step}
             for s in ("mvdm", "tvdm", "svdm") for e in ("none", "oe")]
    parts = {"reverse_step_s": 0.01, "eval_forward_s": 0.005}
    return {"turns": {"pairs": pairs,
                      "substeps": [{"batch": 64, "substeps": 1, "step_s": ours_step},
                                   {"batch": 64, "substeps": 4, "step_s": ours_step / 2},
                                   {"batch": 256, "substeps": 1, "step_s": ours_step / 8}],
                      "study_eval": {f"{p['size']}:{p['encoder']}": parts for p in pairs}},
            "train_eval": {"steps_per_s_after_first_window": rate, "evals": 2,
                           "pauses": [{"step": 1000, "seconds": 9.0, "evaluated": True},
                                      {"step": 2000, "seconds": pause, "evaluated": True}]}}


def test_projections_of_the_svdm_oe_run_and_of_the_grid():
    projections = load_experiment("projections", "benchmarks")
    one = {r["what"]: r["seconds"] for r in projections.svdm_oe_run(_report())}
    study_eval = 1300 * 0.01 + 312 * 0.005
    assert one == pytest.approx({
        "main.py at the study's cadence": 100_000 / 30.0,
        "best step + measured pauses": 100_000 * 0.01 + 100 * 4.0,  # batch 256 left out
        "step x 100k": 100_000 * 0.05,
        "step x 100k + estimated evaluations": 100_000 * 0.05 + 100 * study_eval})
    grid = {(r["code"], r["what"]): r["seconds"] for r in projections.grid(_report())}
    assert grid[("vdm_vae", "18 runs, steps")] == pytest.approx(18 * 100_000 * 0.02)
    assert grid[("vdm_vae", "18 runs, steps + evaluations")] == pytest.approx(
        18 * 100_000 * 0.02 + 18 * 100 * 4.0)
    assert grid[("study", "18 runs, steps + estimated evaluations")] == pytest.approx(
        18 * (100_000 * 0.05 + 100 * study_eval))
    report = _report()
    report["turns"]["study_eval"] = {}
    missing = projections.svdm_oe_run(report)[-1]
    assert missing["seconds"] is None and "reverse step" in missing["missing"]


def test_the_gpu_plan_has_every_pair_and_substeps_row_with_svdm_oe_first():
    turns = load_experiment("turns", "benchmarks")
    pairs, extras = turns.plan(quick=False, with_study=True)
    assert [(o.size, o.encoder, o.batch, s.program) for o, s in pairs][0] == (
        "svdm", "oe", 64, "study")
    assert len(pairs) == 6 and len({(o.size, o.encoder) for o, _ in pairs}) == 6
    assert [(e.batch, e.substeps) for e in extras] == [(64, 4), (64, 16), (256, 1), (256, 4),
                                                       (256, 16)]
    assert all(s is None for _, s in turns.plan(quick=False, with_study=False)[0])


class _FakeWorker:
    """Answers its n-th block with seconds[n] for every call asked, and records the asks."""

    def __init__(self, spec, seconds, asked):
        self.spec, self.status, self.seconds, self.asked = spec, "ready", seconds, asked
        self.blocks = 0

    def ask(self, line, timeout):
        self.asked.append((self.spec.program, self.spec.substeps, line))
        self.blocks += 1
        return {"seconds": [self.seconds[self.blocks - 1]] * int(line)}


def test_turns_alternate_the_pair_and_summarise_ratios_and_gains_per_round():
    turns = load_experiment("turns", "benchmarks")
    ours, study = (turns.Spec(p, "svdm", "oe", 64) for p in ("vdm_vae", "study"))
    extra = turns.Spec("vdm_vae", "svdm", "oe", 256, 4)
    asked = []
    # per call: ours 20 then 10 ms; the study 40 then 30 ms; 4 steps of batch 256: 200, 160 ms
    seconds = {ours: [0.02, 0.01], study: [0.04, 0.03], extra: [0.2, 0.16]}
    workers = {s: _FakeWorker(s, seconds[s], asked) for s in seconds}
    blocks = turns.take_turns([(ours, study)], [extra], workers, rounds=2, steps=8,
                              deadline=float("inf"))
    assert asked == [("vdm_vae", 1, "8"), ("study", 1, "8"), ("vdm_vae", 4, "2"),
                     ("study", 1, "8"), ("vdm_vae", 1, "8"), ("vdm_vae", 4, "2")]
    rows = turns.summarise([(ours, study)], [extra], workers, blocks)
    pair, = rows["pairs"]
    assert pair["study_step_s"] == pytest.approx(0.035)
    assert pair["ratio_median"] == pytest.approx(2.5)  # rounds: 2.0 and 3.0
    assert pair["ratio_lo"] is None and pair["rounds"] == 2  # fewer than 6 rounds
    reference, scan = rows["substeps"]
    assert reference["gain_median"] == 1.0
    assert scan["step_s"] == pytest.approx(0.045)  # per optimiser step: 50 and 40 ms
    # images/s over the reference's: (256 / 0.05) / (64 / 0.02) = 1.6, then 1.0
    assert scan["gain_median"] == pytest.approx(1.3)
