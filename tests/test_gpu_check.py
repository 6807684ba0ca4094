"""benchmarks/gpu_check.sh: the --quick run on this CPU, and the parts it is made of."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, load_experiment

FILES = {"gpu_check.json", "gpu_check.md", "bench.md", "bench.log", "train.log", "sample.log",
         "samples.png"}


@pytest.fixture(scope="module")
def gpu_check():
    return load_experiment("gpu_check", "benchmarks")


def _tiny_mnist(path):
    rng = np.random.default_rng(0)
    np.savez_compressed(path, train_images=rng.integers(0, 256, (64, 8, 8, 1), np.uint8),
                        train_labels=rng.integers(0, 10, 64),
                        test_images=rng.integers(0, 256, (16, 8, 8, 1), np.uint8),
                        test_labels=rng.integers(0, 10, 16))


def test_quick_check_runs_every_phase_and_writes_what_the_device_sends_back(tmp_path):
    data, out = tmp_path / "mnist.npz", tmp_path / "out"
    _tiny_mnist(data)
    result = subprocess.run([os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--quick",
                             "--data", str(data)], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, OUT=str(out)), timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(os.listdir(out)) == FILES  # the device returns at most 8 files of 16 MiB
    assert all(os.path.getsize(out / f) < 16 * 2**20 for f in FILES)
    with open(out / "gpu_check.json") as f:
        report = json.load(f)
    assert report["machine"]["backend"] == "cpu" and report["machine"]["jax"]
    rows = report["bench"]["rows"]
    assert [(r["size"], r["encoder"], r["compute_dtype"]) for r in rows] == [
        ("mvdm", "oe", "float32"), ("mvdm", "oe", "bfloat16")]
    assert all(r["images_per_s"] > 0 and r["train_mfu"] > 0 for r in rows)
    train = report["train"]
    assert (train["returncode"], train["steps"], train["data"]) == (0, 4, str(data))
    assert train["evals"] >= 1 and train["steps_per_s_after_first_window"] > 0
    sample = report["sample"]
    assert (sample["params"], sample["images"], sample["T"]) == ("checkpoint", 16, 10)
    assert (sample["images_done"], sample["images_per_call"]) == (16, 8)
    assert sample["images_per_s"] > 0
    md = (out / "gpu_check.md").read_text()
    assert "| mvdm | oe | bfloat16 |" in md and "16 images at T = 10" in md
    assert "done when the time limit stopped it" not in md
    assert "| mvdm | oe | float32 |" in (out / "bench.md").read_text()


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


def test_training_summary_leaves_the_first_window_out_of_steps_per_second(gpu_check, tmp_path):
    rows = [{"step": 100, "time": 50.0, "train/steps_per_sec": 2.0, "train/bpd": 3.0},
            {"step": 200, "time": 60.0, "train/steps_per_sec": 10.0, "train/bpd": 2.0},
            {"step": 200, "time": 65.0, "eval/bpd": 2.5},
            {"step": 300, "time": 80.0, "train/steps_per_sec": 5.0, "train/bpd": 1.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = gpu_check.training_summary(str(tmp_path / "metrics.jsonl"))
    assert summary["steps"] == 300 and summary["evals"] == 1
    assert summary["steps_per_s_after_first_window"] == pytest.approx(200 / 30)
    assert (summary["last_train_bpd"], summary["last_eval_bpd"]) == (1.5, 2.5)
    assert gpu_check.training_summary(str(tmp_path / "missing.jsonl")) == {"steps": 0}
