"""experiments/collect.py: the table comes from the metrics files, merged across calls."""

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT


@pytest.fixture()
def collect(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "collect", os.path.join(ROOT, "experiments", "collect.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", str(tmp_path / "results"))
    return module


def _write_run(root, name: str, bpd: float, step: int = 10):
    os.makedirs(root / name / "eval")
    with open(root / name / "eval" / "metrics.json", "w") as f:
        json.dump({"step": step, "bpd": bpd, "kl_w_nats": 0.5}, f)


def test_merge_keeps_earlier_runs_with_their_commands(collect, tmp_path):
    _write_run(tmp_path / "a", "mvdm", 1.25)
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "first"])
    _write_run(tmp_path / "b", "mvdm_oe", 1.5)
    collect.main(["--root", str(tmp_path / "b"), "--name", "t", "--command", "second",
                  "--merge"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    assert {n: (m["bpd"], m["command"]) for n, m in runs.items()} == {
        "mvdm": (1.25, "first"), "mvdm_oe": (1.5, "second")}
    text = (tmp_path / "results" / "t.md").read_text()
    assert "- `first`: mvdm" in text and "- `second`: mvdm_oe" in text
    assert "| mvdm | 10 | 1.2500 |" in text and "| mvdm_oe | 10 | 1.5000 |" in text


def test_without_merge_only_the_root_counts(collect, tmp_path):
    _write_run(tmp_path / "a", "mvdm", 1.25)
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "first"])
    _write_run(tmp_path / "b", "mvdm_oe", 1.5)
    collect.main(["--root", str(tmp_path / "b"), "--name", "t", "--command", "second"])
    with open(tmp_path / "results" / "t.json") as f:
        assert list(json.load(f)) == ["mvdm_oe"]


def test_runs_patterns_select_the_run_folders(collect, tmp_path):
    for name in ("mvdm", "pilot_lr", "pilot_mvdm", "svdm"):
        _write_run(tmp_path / "a", name, 1.0)
        _rows(tmp_path / "a" / name, [{"step": 10, "eval/bpd": 1.0, "eval/cpu_seconds": 36.0}])
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "c", "--curves",
                  "--runs", "pilot_*,mvdm"])
    with open(tmp_path / "results" / "t.json") as f:
        assert sorted(json.load(f)) == ["mvdm", "pilot_lr", "pilot_mvdm"]
    text = (tmp_path / "results" / "t.md").read_text()
    assert "--runs=pilot_*,mvdm" in text and "| svdm |" not in text
    assert "| pilot_lr | 10 |" in text


def test_md_of_an_older_collection_names_the_command(collect, tmp_path):
    os.makedirs(tmp_path / "results")
    with open(tmp_path / "results" / "t.json", "w") as f:
        json.dump({"mvdm": {"step": 10, "bpd": 1.0}}, f)
    (tmp_path / "results" / "t.md").write_text("# t\n\nRuns: `old.sh`\n")
    assert collect.previous_runs("t")["mvdm"]["command"] == "old.sh"


def test_learned_prior_bound_and_figures_are_collected(collect, tmp_path):
    _write_run(tmp_path / "a", "mvdm_oe", 1.5)
    with open(tmp_path / "a" / "mvdm_oe" / "eval" / "w_prior.json", "w") as f:
        json.dump({"bpd_learned_prior": 1.375, "kl_w_learned_prior_nats": 0.25, "steps": 3}, f)
    (tmp_path / "a" / "mvdm_oe" / "eval" / "interpolation.png").write_bytes(b"png")
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        run = json.load(f)["mvdm_oe"]
    assert (run["bpd_learned_prior"], run["kl_w_learned_prior_nats"]) == (1.375, 0.25)
    assert "steps" not in run
    assert (tmp_path / "results" / "t_figures" / "mvdm_oe_interpolation.png").read_bytes() == b"png"
    assert "| 1.3750 |" in (tmp_path / "results" / "t.md").read_text()


def test_learned_prior_bound_of_a_prior_fitted_before_the_evaluation(collect, tmp_path):
    workdir = tmp_path / "a" / "mnist_cpu"
    os.makedirs(workdir / "eval")
    with open(workdir / "eval" / "metrics.json", "w") as f:
        json.dump({"step": 10, "bpd": 1.5, "bpd_kl_w": 0.25}, f)
    with open(workdir / "eval" / "w_prior.json", "w") as f:  # no bpd_learned_prior in it
        json.dump({"bpd_kl_w_learned_prior": 0.125, "kl_w_learned_prior_nats": 8.0}, f)
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        assert json.load(f)["mnist_cpu"]["bpd_learned_prior"] == 1.375


def _load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_grid_pins_parallel_jobs_to_their_own_cores(monkeypatch):
    run_grid = _load("run_grid")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    seen = []

    def fake_run(name, args, cores=None):
        seen.append((name, frozenset(cores)))
        time.sleep(0.3)  # the first two overlap
        return name != "b"

    monkeypatch.setattr(run_grid, "train_and_eval", fake_run)
    args = run_grid.argparse.Namespace(jobs=2)
    failed = run_grid.run_all(["a", "b", "c", "d"], args)
    assert failed == ["b"]
    assert sorted(n for n, _ in seen) == ["a", "b", "c", "d"]
    cores = {c for _, c in seen}
    assert len(cores) == 2 and not set.intersection(*map(set, cores))


def _rows(path, rows):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.write('{"step": 9, "tr')  # a line cut short by a kill


def test_progress_reports_step_cpu_time_and_last_eval(tmp_path):
    plot_curves = _load("plot_curves")
    _rows(tmp_path / "r", [
        {"step": 50, "train/cpu_seconds": 360.0},
        {"step": 50, "eval/bpd": 2.0, "eval/cpu_seconds": 400.0},
        {"step": 100, "train/cpu_seconds": 720.0},
        {"step": 100, "eval/bpd": 1.5, "eval/kl_w_nats": 3.0, "eval/cpu_seconds": 800.0},
        {"step": 120, "train/cpu_seconds": 900.0}])
    os.symlink(tmp_path / "r", tmp_path / "alias_of_r")
    assert list(plot_curves.progress(str(tmp_path))) == ["r"]
    run = plot_curves.progress(str(tmp_path))["r"]
    assert run["step"] == 120 and run["eval_step"] == 100
    assert run["cpu_hours"] == pytest.approx(0.25)
    assert run["bpd"] == 1.5 and run["kl_w_nats"] == 3.0
    assert plot_curves.series(plot_curves.read_metrics(str(tmp_path / "r")), "eval/bpd") == (
        [400.0 / 3600, 800.0 / 3600], [2.0, 1.5])
    plot_curves.plot_curves(str(tmp_path), ["r"], str(tmp_path / "c.png"))
    assert os.path.getsize(tmp_path / "c.png") > 0
    assert "| r | 120 | 0.2500 | 100 | 1.5000 |" in plot_curves.progress_table({"r": run})


def test_paired_gaps_to_the_unconditional_run_along_training(tmp_path):
    plot_curves = _load("plot_curves")
    _rows(tmp_path / "u", [{"step": s, "eval/bpd": b, "eval/bpd_diff": d}
                           for s, b, d in ((50, 2.0, 1.9), (100, 1.5, 1.4), (150, 1.25, 1.2))])
    _rows(tmp_path / "e", [{"step": s, "eval/bpd": b, "eval/bpd_diff": d}
                           for s, b, d in ((50, 2.25, 1.875), (100, 1.5625, 1.375))])
    g = plot_curves.gaps(str(tmp_path), "e", "u")
    assert g["eval/bpd"][0] == [50, 100]
    np.testing.assert_allclose(g["eval/bpd"][1], [0.25, 0.0625])
    np.testing.assert_allclose(g["eval/bpd_diff"][1], [-0.025, -0.025], atol=1e-12)
    assert plot_curves.plot_gaps(str(tmp_path), [("e", "u")], str(tmp_path / "g.png"))
    assert os.path.getsize(tmp_path / "g.png") > 0
    _rows(tmp_path / "late", [{"step": 200, "eval/bpd": 1.0, "eval/bpd_diff": 0.9}])
    assert not plot_curves.plot_gaps(str(tmp_path), [("late", "u")], str(tmp_path / "h.png"))
    assert not os.path.exists(tmp_path / "h.png")


def _write_per_image(root, name: str, bpd, seed: int = 0, draws: int = 1):
    np.savez(root / name / "eval" / "bound_per_image.npz", seed=seed, draws=draws, bpd=bpd)


def test_paired_difference_to_the_unconditional_run_and_probe_intervals(collect, tmp_path):
    root = tmp_path / "a"
    noise = np.random.default_rng(0).normal(0.0, 1.0, 400)  # shared by the two runs
    gap = np.random.default_rng(1).normal(0.05, 0.01, 400)
    for name, bpd in (("mvdm", 1.0 + noise), ("mvdm_oe", 1.0 + noise + gap),
                      ("svdm_oe", 1.0 + noise)):
        _write_run(root, name, float(np.mean(bpd)))
        _write_per_image(root, name, bpd)
    with open(root / "mvdm_oe" / "eval" / "metrics.json", "w") as f:
        json.dump({"step": 10, "bpd": float(np.mean(1.0 + noise + gap)), "fid": 12.5,
                   "num_fid_samples": 1000, "sample_steps": 250, "probe_linear_acc": 0.75,
                   "probe_linear_acc_ci": [0.72, 0.78], "probe_knn_acc_pixels": 0.96875,
                   "probe_linear_diff_trained_pixels": {"mean": 0.025, "ci_low": 0.0121,
                                                        "ci_high": 0.0379}}, f)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    diff = runs["mvdm_oe"]["bpd_minus_uncond"]
    np.testing.assert_allclose(diff["mean"], np.mean(gap), rtol=1e-9)
    assert diff["ci_low"] > 0 and diff["stderr"] < 0.05 * diff["unpaired_stderr"]
    assert "bpd_minus_uncond" not in runs["mvdm"]  # the baseline itself
    assert "bpd_minus_uncond" not in runs["svdm_oe"]  # no unconditional SVDM run
    text = (tmp_path / "results" / "t.md").read_text()
    assert "bpd - bpd(uncond) [95% CI]" in text
    assert f"{diff['mean']:.4f} [{diff['ci_low']:.4f}, {diff['ci_high']:.4f}]" in text
    assert "0.750 [0.720, 0.780]" in text and "12.5000 (n=1000, T=250)" in text
    bound, samples, code = text.split("The bound (bits/dim):")[1].split("\n\n")[1:6:2]
    assert "| mvdm_oe | 10 |" in bound and "12.5000" not in bound
    assert "| mvdm_oe | 10 | 12.5000 (n=1000, T=250) |" in samples
    row = next(line for line in code.splitlines() if line.startswith("| mvdm_oe "))
    assert "| 0.9688 |" in row and row.endswith("| 0.025 [0.012, 0.038] | 0 |")  # study KL 0



def test_protocol_runs_are_paired_with_their_uncond_run(collect, tmp_path):
    root = tmp_path / "a"
    noise = np.random.default_rng(2).normal(0.0, 1.0, 50)
    for name, gap in (("mnist_cpu_uncond", 0.0), ("mnist_cpu_ungated", 0.02), ("mnist_cpu", 0.01),
                      ("other_run", 0.0)):
        _write_run(root, name, float(np.mean(1.0 + noise + gap)))
        _write_per_image(root, name, 1.0 + noise + gap)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    for name, gap in (("mnist_cpu_ungated", 0.02), ("mnist_cpu", 0.01)):
        np.testing.assert_allclose(runs[name]["bpd_minus_uncond"]["mean"], gap, atol=1e-12)
    assert "bpd_minus_uncond" not in runs["mnist_cpu_uncond"]
    assert "bpd_minus_uncond" not in runs["other_run"]
    assert "bpd_learned_prior_minus_uncond" not in runs["mnist_cpu"]  # no prior fitted


def test_a_longer_schedule_is_paired_only_with_the_uncond_run_of_its_schedule(collect, tmp_path):
    names = {"mnist_cpu_uncond", "mnist_cpu_uncond_10k", "mnist_cpu_uncond_first"}
    assert collect.unconditional_baseline("mnist_cpu_c30_10k", names) == "mnist_cpu_uncond_10k"
    assert collect.unconditional_baseline("mnist_cpu_c30", names) == "mnist_cpu_uncond"
    assert collect.unconditional_baseline("mnist_cpu_uncond_first", names) is None
    root = tmp_path / "a"
    noise = np.random.default_rng(4).normal(0.0, 1.0, 50)
    for name, gap, step in (("mnist_cpu_uncond", 0.0, 10), ("mnist_cpu_c30_10k", 0.03, 20)):
        _write_run(root, name, float(np.mean(1.0 + noise + gap)), step)
        _write_per_image(root, name, 1.0 + noise + gap)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        assert "bpd_minus_uncond" not in json.load(f)["mnist_cpu_c30_10k"]  # 20 steps against 10
    _write_run(root, "mnist_cpu_uncond_10k", float(np.mean(1.0 + noise + 0.01)), 20)
    _write_per_image(root, "mnist_cpu_uncond_10k", 1.0 + noise + 0.01)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        diff = json.load(f)["mnist_cpu_c30_10k"]["bpd_minus_uncond"]
    np.testing.assert_allclose(diff["mean"], 0.02, atol=1e-12)


def test_bound_under_the_learned_prior_is_paired_with_the_uncond_run(collect, tmp_path):
    root = tmp_path / "a"
    rng = np.random.default_rng(3)
    noise, kl_std = rng.normal(0.0, 1.0, 200), rng.uniform(0.01, 0.03, 200)
    kl_learned = 0.5 * kl_std + rng.normal(0.0, 0.001, 200)
    _write_run(root, "mnist_cpu_uncond", float(np.mean(1.0 + noise)))
    _write_per_image(root, "mnist_cpu_uncond", 1.0 + noise)
    _write_run(root, "mnist_cpu", float(np.mean(1.0 + noise + kl_std)))
    np.savez(root / "mnist_cpu" / "eval" / "bound_per_image.npz", seed=0, draws=1,
             bpd=1.0 + noise + kl_std, bpd_kl_w=kl_std, bpd_diff=0.5 + noise - 0.25 * kl_std)
    np.savez(root / "mnist_cpu_uncond" / "eval" / "bound_per_image.npz", seed=0, draws=1,
             bpd=1.0 + noise, bpd_diff=0.5 + noise)
    np.savez(root / "mnist_cpu" / "eval" / "w_prior_per_image.npz",
             bpd_kl_w_learned_prior=kl_learned)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    learned = runs["mnist_cpu"]["bpd_learned_prior_minus_uncond"]
    np.testing.assert_allclose(learned["mean"], np.mean(kl_learned), rtol=1e-9)
    np.testing.assert_allclose(runs["mnist_cpu"]["bpd_minus_uncond"]["mean"], np.mean(kl_std),
                               rtol=1e-9)
    assert learned["ci_low"] > 0 and learned["ci_high"] < np.mean(kl_std)
    np.testing.assert_allclose(runs["mnist_cpu"]["bpd_diff_minus_uncond"]["mean"],
                               -0.25 * np.mean(kl_std), rtol=1e-9)
    text = (tmp_path / "results" / "t.md").read_text()
    assert "bpd_learned_prior - bpd(uncond) [95% CI]" in text
    assert f"{learned['mean']:.4f} [{learned['ci_low']:.4f}, {learned['ci_high']:.4f}]" in text
    assert collect.unconditional_baseline("mvdm_oe", {"mvdm", "mnist_cpu_uncond"}) == "mvdm"

def _write_fid(root, name: str, prior: str, num: int, steps: int, fid: float, splits=()):
    directory = root / name / "eval" / f"fid_{prior}_T{steps}"
    os.makedirs(directory)
    with open(directory / "fid.json", "w") as f:
        json.dump({"prior": prior, "num_samples": num, "steps": steps, "fid": fid,
                   "fid_splits": list(splits), "fid_split_size": num // 5}, f)


def test_sample_fid_results_fill_the_fid_columns_and_aliases_are_skipped(collect, tmp_path):
    root = tmp_path / "a"
    _write_run(root, "mnist_cpu", 1.27)
    _write_fid(root, "mnist_cpu", "standard", 5000, 100, 9.5)
    _write_fid(root, "mnist_cpu", "standard", 1000, 250, 30.0)  # fewer samples: not shown
    _write_fid(root, "mnist_cpu", "learned", 5000, 100, 7.25)
    os.symlink(root / "mnist_cpu", root / "mnist_cpu_alias")
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    assert list(runs) == ["mnist_cpu"]
    m = runs["mnist_cpu"]
    assert (m["fid"], m["fid_samples"], m["fid_steps"]) == (9.5, 5000, 100)
    assert m["fid_learned_prior"] == 7.25
    text = (tmp_path / "results" / "t.md").read_text()
    assert "9.5000 (n=5000, T=100) | 7.2500 (n=5000, T=100)" in text
    assert "fid_minus_uncond" not in m  # no unconditional run to compare with

    _write_run(root, "mnist_cpu_uncond", 1.25)
    _write_fid(root, "mnist_cpu_uncond", "standard", 5000, 100, 9.0, [20, 21, 22, 23, 24])
    shutil.rmtree(root / "mnist_cpu" / "eval" / "fid_standard_T100")
    _write_fid(root, "mnist_cpu", "standard", 5000, 100, 9.5, [21, 23, 22, 25, 24])
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        diff = json.load(f)["mnist_cpu"]["fid_minus_uncond"]
    assert diff["mean"] == pytest.approx(1.0) and diff["block_size"] == 1000
    assert diff["ci_low"] < 1.0 < diff["ci_high"]
    assert "(n=1000)" in (tmp_path / "results" / "t.md").read_text()
    shutil.rmtree(root / "mnist_cpu" / "eval" / "fid_learned_T100")
    _write_fid(root, "mnist_cpu", "learned", 5000, 100, 8.0, [16, 17, 18, 19, 20])
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        learned = json.load(f)["mnist_cpu"]["fid_learned_prior_minus_uncond"]
    assert learned["mean"] == pytest.approx(-4.0) and learned["ci_high"] < 0

    grid = root / "mnist_cpu" / "eval" / "fid_learned_T100" / "samples.png"
    grid.write_bytes(b"png")
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    assert (tmp_path / "results" / "t_figures" / "mnist_cpu_fid_learned_T100.png").exists()


def test_runs_evaluated_with_other_draws_are_not_paired(collect, tmp_path):
    root = tmp_path / "a"
    for name, draws in (("mvdm", 1), ("mvdm_oe", 4)):
        _write_run(root, name, 1.0)
        _write_per_image(root, name, np.ones(8), draws=draws)
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        assert "bpd_minus_uncond" not in json.load(f)["mvdm_oe"]


def _fake_main(run_grid, monkeypatch, train_code: int, marks_finished: bool):
    """Replaces main.py: training exits with train_code (and maybe writes finished.json, naming
    the evaluation of its last step, as main.py does)."""
    calls = []

    def run(cmd, log_path, prefix="", cores=None):
        del log_path, prefix, cores
        workdir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--workdir="))
        mode = "eval" if "--mode=eval" in cmd else "train"
        calls.append(mode)
        if mode == "train" and marks_finished:
            with open(os.path.join(workdir, "finished.json"), "w") as f:
                json.dump({"step": 5, "evaluation": {"step": 5, "eval/bpd": 1.0}}, f)
        return train_code if mode == "train" else 0

    monkeypatch.setattr(run_grid, "run", run)
    return calls


@pytest.mark.parametrize("code,exit_code", [(130, 130), (143, 143), (-2, 130), (-15, 143)])
def test_interrupted_training_is_not_evaluated_and_the_grid_exits_with_its_code(
        monkeypatch, tmp_path, code, exit_code):
    run_grid = _load("run_grid")
    calls = _fake_main(run_grid, monkeypatch, code, marks_finished=False)
    with pytest.raises(SystemExit) as stopped:
        run_grid.main(["--configs=mvdm", "--steps=5", f"--root={tmp_path}"])
    assert stopped.value.code == exit_code
    assert calls == ["train"]


def test_a_child_started_after_the_stop_signal_is_stopped_too(monkeypatch, tmp_path):
    run_grid = _load("run_grid")
    monkeypatch.setattr(run_grid, "_STOP", threading.Event())
    run_grid._STOP.set()  # as if SIGINT came between train_and_eval's check and the start
    start = time.time()
    code = run_grid.run([sys.executable, "-c", "import time; time.sleep(120)"],
                        str(tmp_path / "log"))
    # killed by SIGINT, or exit 1 with a KeyboardInterrupt if it came while Python was starting
    assert code in (-signal.SIGINT, 1)
    assert time.time() - start < 60


def test_a_training_that_fails_while_the_runner_stops_counts_as_stopped(monkeypatch, tmp_path,
                                                                        capsys):
    run_grid = _load("run_grid")
    monkeypatch.setattr(run_grid, "_STOP", threading.Event())
    monkeypatch.setattr(run_grid, "_STOPPED", {})

    def stopped_while_starting(cmd, log_path, prefix="", cores=None):
        run_grid._STOP.set()
        return 1  # a KeyboardInterrupt during the child's interpreter start

    monkeypatch.setattr(run_grid, "run", stopped_while_starting)
    args = argparse.Namespace(root=str(tmp_path), steps=5, train_args="", eval_args="", jobs=1)
    assert not run_grid.train_and_eval("mvdm", args)
    assert run_grid._STOPPED == {"mvdm": 128 + signal.SIGINT}
    assert "training failed" not in capsys.readouterr().out


def test_training_that_exits_zero_unfinished_is_not_evaluated(monkeypatch, tmp_path):
    run_grid = _load("run_grid")
    calls = _fake_main(run_grid, monkeypatch, 0, marks_finished=False)
    with pytest.raises(SystemExit, match="failed: mvdm"):
        run_grid.main(["--configs=mvdm", "--steps=5", f"--root={tmp_path}"])
    assert calls == ["train"]


def test_finished_training_is_evaluated_and_not_retrained(monkeypatch, tmp_path):
    run_grid = _load("run_grid")
    calls = _fake_main(run_grid, monkeypatch, 0, marks_finished=True)
    run_grid.main(["--configs=mvdm", "--steps=5", f"--root={tmp_path}"])
    run_grid.main(["--configs=mvdm", "--steps=5", f"--root={tmp_path}"])
    assert calls == ["train", "eval", "eval"]


def test_a_finished_json_without_its_evaluation_is_trained_again(monkeypatch, tmp_path):
    run_grid = _load("run_grid")
    calls = _fake_main(run_grid, monkeypatch, 0, marks_finished=True)
    (tmp_path / "mvdm").mkdir()
    (tmp_path / "mvdm" / "finished.json").write_text('{"step": 5}')  # an older run's
    assert not run_grid.training_finished(str(tmp_path / "mvdm"), 5)
    run_grid.main(["--configs=mvdm", "--steps=5", f"--root={tmp_path}"])
    assert calls == ["train", "eval"]


def test_bar_plots_show_runs_named_outside_the_study_grid(collect, tmp_path, monkeypatch):
    drawn, texts, bar = [], [], collect.plt.Axes.bar
    monkeypatch.setattr(collect.plt.Axes, "bar", lambda self, xs, ys, **kw: (
        drawn.append((list(xs), list(ys))), bar(self, xs, ys, **kw))[1])
    monkeypatch.setattr(collect.plt.Axes, "text", lambda self, *a, **kw: texts.append(a[2]))
    protocol = {"mnist_cpu_uncond": {"bpd": 1.25}, "mnist_cpu": {"bpd": 1.27}}
    collect.plot_metric_groups(protocol, ("bpd", "fid"), str(tmp_path / "a.png"))
    assert drawn == [([0, 1], [1.27, 1.25])]  # one bar per run, sorted by name
    assert texts == ["no fid in these runs"]  # and no such text on the panel with bars
    drawn.clear()
    grid = {"mvdm": {"bpd": 1.3}, "mvdm_oe": {"bpd": 1.31}, "mvdm_oe_fb": {"bpd": 1.4}}
    collect.plot_metric_groups(grid, ("bpd",), str(tmp_path / "b.png"))
    assert sorted(ys for _, ys in drawn) == [[1.3], [1.31]]  # by encoder; remedy runs left out


def test_protocol_pilot_stops_at_its_step_with_its_one_change(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, ROOT=str(tmp_path), PILOTS="pilot_mvdm",
               PILOT_STEPS="1", PILOT_SMOKE="1")
    script = os.path.join(ROOT, "experiments", "mnist_cpu.sh")
    bad = subprocess.run([script, "pilots"], env=dict(env, PILOTS="pilot_mvdm,pilot_x"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown pilot pilot_x" in bad.stderr
    started = subprocess.run([script, "pilots"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    log = tmp_path / "pilots_0.log"
    for _ in range(600):
        if log.exists() and "Stopped at step 1 of 2" in log.read_text():
            break
        time.sleep(1)
    assert "Stopped at step 1 of 2" in log.read_text(), log.read_text()[-2000:]
    assert not (tmp_path / "pilot_mvdm" / "finished.json").exists()
    with open(tmp_path / "pilot_mvdm" / "config.json") as f:
        config = json.load(f)["config"]
    assert config["model"]["sm_ch_mult"] == [1] and config["model"]["sm_n_layer"] == 4
    assert config["optimizer"]["learning_rate"] == 5e-4  # the lr it was made with


def _write_probed_run(root, name: str, probe: float, cpu_seconds_by_step: dict, step: int):
    os.makedirs(root / name / "eval")
    with open(root / name / "eval" / "metrics.json", "w") as f:
        json.dump({"step": step, "bpd": 1.0, "probe_linear_acc": probe,
                   "probe_linear_acc_ci": [probe - 0.01, probe + 0.01]}, f)
    with open(root / name / "metrics.jsonl", "w") as f:
        for s, seconds in cpu_seconds_by_step.items():
            f.write(json.dumps({"step": s, "eval/bpd": 1.0, "eval/cpu_seconds": seconds}) + "\n")


def _write_matched_probe(folder, name: str, step: int, probe: float):
    os.makedirs(folder, exist_ok=True)
    with open(folder / f"{name}_step{step}.json", "w") as f:
        json.dump({"step": step, "probe_linear_acc_trained": probe,
                   "probe_linear_acc_trained_ci": [probe - 0.02, probe + 0.02]}, f)


def test_targets_figure_puts_each_probe_at_the_cpu_time_of_its_step(collect, tmp_path):
    root, matched = tmp_path / "a", tmp_path / "matched"
    _write_probed_run(root, "mnist_cpu_c30", 0.94, {500: 1800.0, 1000: 5400.0, 2000: 9000.0},
                      step=2000)
    _write_probed_run(root, "mnist_cpu_c30_w128", 0.96, {2000: 7200.0}, step=2000)
    _write_matched_probe(matched, "mnist_cpu_c30", 1000, 0.92)
    _write_matched_probe(matched, "mnist_cpu_c30", 1500, 0.93)  # no CPU time logged there
    _write_matched_probe(matched, "mnist_cpu_c30_w128", 500, 0.5)  # not c30's, though it starts so
    runs = collect.load_runs(str(root))
    points = collect.targets.probe_points(runs, str(root), str(matched))
    np.testing.assert_allclose(points["mnist_cpu_c30"], [(1.5, 0.92, 0.90, 0.94),
                                                         (2.5, 0.94, 0.93, 0.95)])
    np.testing.assert_allclose(points["mnist_cpu_c30_w128"], [(2.0, 0.96, 0.95, 0.97)])
    collect.main(["--root", str(root), "--name", "t", "--command", "c",
                  "--matched-probes", str(matched)])
    assert (tmp_path / "results" / "t_targets.png").stat().st_size > 0
    assert "![the targets: probe against bound, and probe against budget](t_targets.png)" in (
        tmp_path / "results" / "t.md").read_text()


def test_no_targets_figure_without_a_probed_run(collect, tmp_path):
    _write_run(tmp_path / "a", "mnist_cpu_uncond", 1.0)
    collect.main(["--root", str(tmp_path / "a"), "--name", "t", "--command", "c"])
    assert not (tmp_path / "results" / "t_targets.png").exists()
    assert "t_targets.png" not in (tmp_path / "results" / "t.md").read_text()


def test_seeds_pair_with_their_uncond_seed_and_the_interval_covers_the_spread(collect, tmp_path):
    root = tmp_path / "a"
    noise = np.random.default_rng(3).normal(0.0, 1.0, 200)
    # Per seed: the unconditional run's training offset and the encoder run's gap to it.
    offsets, gaps = {1: 0.0, 2: 0.003, 3: -0.002}, {1: 0.010, 2: 0.004, 3: 0.013}
    for seed in (1, 2, 3):
        suffix = "" if seed == 1 else f"_seed{seed}"
        for name, shift in ((f"mnist_cpu_uncond{suffix}", offsets[seed]),
                            (f"mnist_cpu{suffix}", offsets[seed] + gaps[seed])):
            _write_run(root, name, float(np.mean(1.0 + noise + shift)))
            _write_per_image(root, name, 1.0 + noise + shift)
    _write_run(root, "mnist_cpu_mmd", 1.0)  # one seed: no across-seed entry
    collect.main(["--root", str(root), "--name", "t", "--command", "c"])
    with open(tmp_path / "results" / "t.json") as f:
        runs = json.load(f)
    across = runs.pop("across_seeds")
    assert set(across) == {"mnist_cpu", "mnist_cpu_uncond"} and "mnist_cpu_mmd" in runs
    main = across["mnist_cpu"]
    assert main["seeds"] == [1, 2, 3] and main["runs"][1] == "mnist_cpu_seed2"
    diff = main["bpd_minus_uncond"]
    np.testing.assert_allclose(diff["values"], [gaps[1], gaps[2], gaps[3]], atol=1e-12)
    sd = np.std(list(gaps.values()), ddof=1)
    half = 4.302653 * sd / np.sqrt(3)  # Student t, 2 degrees of freedom
    np.testing.assert_allclose([diff["ci_low"], diff["ci_high"]],
                               [np.mean(list(gaps.values())) - half,
                                np.mean(list(gaps.values())) + half], rtol=1e-5)
    # Each seed's own paired interval is far narrower than the across-seed one.
    assert runs["mnist_cpu_seed2"]["bpd_minus_uncond"]["ci_high"] - \
        runs["mnist_cpu_seed2"]["bpd_minus_uncond"]["ci_low"] < 1e-9 < diff["ci_high"] - \
        diff["ci_low"]
    text = (tmp_path / "results" / "t.md").read_text()
    assert "## Across seeds" in text and "Student-t 95% interval over the per-seed" in text
    verdict = next(line for line in text.splitlines() if line.startswith("- mnist_cpu:"))
    assert "bound within 0.01, w ~ N(0, I): not shown" in verdict  # upper end 0.0234
    # A later collect with --merge keeps the runs, not the summary, as runs.
    collect.main(["--root", str(tmp_path / "empty"), "--name", "t", "--command", "d", "--merge"])
    with open(tmp_path / "results" / "t.json") as f:
        assert "across_seeds" not in collect.previous_runs("t") and "mnist_cpu" in json.load(f)
