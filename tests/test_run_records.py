"""experiments/run_records.py: a finished run's record outlives its folder."""

import importlib.util
import json
import os
import shutil
import subprocess

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import ROOT


def _load(name: str, tmp_path=None, monkeypatch=None):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if monkeypatch is not None:
        monkeypatch.setattr(module, "RESULTS", str(tmp_path / "results"))
    return module


@pytest.fixture()
def records():
    return _load("run_records")


def _write(path, text="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _evaluated_run(root, name: str, bpd: np.ndarray, step: int = 10):
    """A run folder as training, evaluation and sample_fid leave it, checkpoints included."""
    workdir = root / name
    _write(workdir / "config.json", json.dumps({"config": {"name": name}}))
    _write(workdir / "finished.json", json.dumps({"step": step}))
    rows = [{"step": s, "eval/bpd": 1.0 + 1.0 / s, "eval/cpu_seconds": 36.0 * s}
            for s in (5, step)]
    _write(workdir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    os.makedirs(workdir / "images")
    plt.imsave(workdir / "images" / f"samples_{step}.png", np.eye(8), cmap="gray")
    _write(workdir / "eval" / "metrics.json",
           json.dumps({"step": step, "bpd": float(np.mean(bpd)), "kl_w_nats": 0.5}))
    np.savez(workdir / "eval" / "bound_per_image.npz", seed=0, draws=1, bpd=bpd)
    _write(workdir / "eval" / "samples.png")
    _write(workdir / "eval" / "samples.npz")
    fid = workdir / "eval" / "fid_standard_T100"
    _write(fid / "fid.json", json.dumps({"prior": "standard", "num_samples": 10, "steps": 100,
                                         "fid": 9.5}))
    _write(fid / "samples.png")
    _write(fid / "chunk_00000.npz")
    _write(workdir / "checkpoints" / str(step) / "state")
    _write(workdir / "tensorboard" / "events.out")


def _files(folder) -> set:
    return {os.path.relpath(os.path.join(d, f), folder)
            for d, _, names in os.walk(folder) for f in names}


def test_a_record_keeps_the_results_and_leaves_checkpoints_and_samples(records, tmp_path):
    root, kept = tmp_path / "runs", tmp_path / "records"
    _evaluated_run(root, "mnist_cpu", np.ones(4))
    _write(root / "training_only" / "metrics.jsonl")  # not evaluated: no record
    _write(kept / "mnist_cpu" / "eval" / "w_prior.json")  # the run has none now: stale
    assert records.save(str(root), str(kept)) == ["mnist_cpu"]
    assert _files(kept) == {os.path.join("mnist_cpu", f) for f in (
        "config.json", "finished.json", "metrics.jsonl",
        "eval/metrics.json", "eval/bound_per_image.npz", "eval/samples.png",
        "eval/fid_standard_T100/fid.json", "eval/fid_standard_T100/samples.png")}


def test_restore_never_touches_a_run_folder_that_is_there(records, tmp_path):
    root, kept = tmp_path / "runs", tmp_path / "records"
    _evaluated_run(kept, "a", np.ones(4))
    _evaluated_run(kept, "b", np.ones(4))
    _write(root / "a" / "metrics.jsonl", "live")  # a run in progress under the same name
    assert records.restore(str(kept), str(root)) == ["b"]
    assert (root / "a" / "metrics.jsonl").read_text() == "live"
    assert _files(root / "b") == _files(kept / "b")
    assert records.restore(str(kept), str(root)) == []


def test_runs_collected_from_their_records_give_the_same_results(records, tmp_path, monkeypatch):
    """A new machine: the run folders are gone, their records restore every number, the
    paired difference to the unconditional run included."""
    collect = _load("collect", tmp_path, monkeypatch)
    noise = np.random.default_rng(0).normal(0.0, 1.0, 100)
    old, new, kept = tmp_path / "old", tmp_path / "new", tmp_path / "records"
    _evaluated_run(old, "mnist_cpu_uncond", 1.0 + noise)
    _evaluated_run(old, "mnist_cpu", 1.02 + noise)
    args = ["--name", "t", "--command", "c", "--curves"]
    collect.main(["--root", str(old)] + args)
    before = (tmp_path / "results" / "t.json").read_text()
    records.save(str(old), str(kept))
    assert sorted(records.restore(str(kept), str(new))) == ["mnist_cpu", "mnist_cpu_uncond"]
    collect.main(["--root", str(new)] + args)
    assert (tmp_path / "results" / "t.json").read_text() == before
    diff = json.loads(before)["mnist_cpu"]["bpd_minus_uncond"]
    np.testing.assert_allclose(diff["mean"], 0.02, atol=1e-12)
    assert "| mnist_cpu | 10 |" in (tmp_path / "results" / "t.md").read_text()


def test_the_protocol_makes_no_fid_of_a_restored_run(tmp_path):
    """A restored run has no checkpoint to sample from: the FID worker says so and goes on."""
    _evaluated_run(tmp_path, "mnist_cpu_b1", np.ones(4))
    shutil.rmtree(tmp_path / "mnist_cpu_b1" / "checkpoints")
    script = os.path.join(ROOT, "experiments", "mnist_cpu.sh")
    env = dict(os.environ, ROOT=str(tmp_path), CONFIGS="mnist_cpu_b1",
               RECORDS=str(tmp_path / "records"), FID_NICE="1")
    done = subprocess.run([script, "fid-worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "[mnist_cpu_b1] restored from its record, no FID" in done.stdout
