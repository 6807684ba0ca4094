"""Resumable, shareable sampling for FID (`python -m vdm_vae.evaluation.sample_fid`)."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import perturb, tiny_config
from test_train import ROOT, run_main

from vdm_vae.evaluation import sample_fid
from vdm_vae.model.vae import init_params
from vdm_vae.runtime import locks


@pytest.fixture(scope="module")
def model():
    config = tiny_config("conv")
    variables = init_params(config, jax.random.PRNGKey(3))
    return config, {"params": perturb(variables["params"], 4)}


_HOLDER = """
import sys
from vdm_vae.runtime import locks
print(locks.claim(sys.argv[1]), flush=True)
sys.stdin.read()  # holds the lock until its stdin closes
"""


def _holder(lock):
    """A process that claims `lock` and holds it until its stdin closes; (it, its claim)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, lock], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip() == "True"


def test_a_lock_is_exclusive_while_its_holder_lives_and_free_once_it_is_killed(tmp_path):
    lock = str(tmp_path / "chunk.lock")
    assert locks.claim(lock)
    assert not locks.claim(lock)  # held by this process
    proc, claimed = _holder(lock)
    assert not claimed  # nor by another
    proc.communicate()
    locks.release(lock)
    assert not os.path.exists(lock)

    proc, claimed = _holder(lock)
    assert claimed and not locks.claim(lock)
    proc.kill()  # dies holding it, the file left behind
    proc.wait()
    assert os.path.exists(lock) and locks.claim(lock)
    with open(lock) as f:
        assert f.read().split() == [os.uname().nodename, str(os.getpid())]
    locks.release(lock)


def test_a_lock_file_naming_a_live_pid_but_unlocked_is_free(tmp_path):
    lock = str(tmp_path / "chunk.lock")
    with open(lock, "w") as f:  # as an older lock file, or one whose pid was reused
        f.write(f"{os.uname().nodename} {os.getppid()}")
    assert locks.claim(lock)
    locks.release(lock)


def test_processes_claiming_one_free_lock_at_once_get_it_exactly_once(tmp_path):
    lock = str(tmp_path / "chunk.lock")
    with open(lock, "w") as f:
        f.write("otherhost 1")  # left behind: every process sees a lock file to take over
    holders = [_holder(lock) for _ in range(6)]
    for proc, _ in holders:
        proc.communicate()
    assert [proc.returncode for proc, _ in holders] == [0] * 6
    assert sum(claimed for _, claimed in holders) == 1


def test_chunks_resume_to_the_same_samples(tmp_path, model):
    config, params = model
    args = dict(num=5, batch=2, steps=2, seed=7)
    first = str(tmp_path / "first")
    assert sample_fid.sample_chunks(params, config, first, **args) == 3
    whole = sample_fid.gather(first, 5, 2)
    assert whole.shape == (5,) + config.image_shape and whole.dtype == np.uint8

    os.remove(os.path.join(first, "chunk_00001.npz"))  # as if killed while sampling chunk 1
    assert sample_fid.gather(first, 5, 2) is None
    assert sample_fid.sample_chunks(params, config, first, **args) == 1
    np.testing.assert_array_equal(sample_fid.gather(first, 5, 2), whole)

    other = str(tmp_path / "other_seed")
    sample_fid.sample_chunks(params, config, other, **dict(args, seed=8))
    assert not np.array_equal(sample_fid.gather(other, 5, 2), whole)


def test_a_chunk_held_by_another_process_is_left_to_it(tmp_path, model):
    config, params = model
    directory = tmp_path / "held"
    directory.mkdir()
    assert locks.claim(str(directory / "chunk_00000.npz.lock"))  # as another worker would
    assert sample_fid.sample_chunks(params, config, str(directory), 4, 2, 2, 0) == 1
    locks.release(str(directory / "chunk_00000.npz.lock"))
    assert not (directory / "chunk_00000.npz").exists()
    assert sample_fid.gather(str(directory), 4, 2) is None


def test_progress_counts_chunks_written_not_those_another_worker_holds(tmp_path, capsys):
    from vdm_vae.runtime.progress import Progress

    assert locks.claim(str(tmp_path / "f0.lock"))  # chunk 0 held, as by another worker

    def path_of(i):
        return str(tmp_path / f"f{i}")

    def make(i):
        open(path_of(i), "w").close()
        return 1

    bar = Progress(6, "sampling", "img", interval=0.0)
    assert sample_fid._each_claimed([0, 1, 2], path_of, [2, 2, 2], bar, make) == 2
    counts = [line.split()[1] for line in capsys.readouterr().err.splitlines()]
    assert counts == ["0/6", "2/6", "4/6"]  # the held chunk is not counted before it is written
    locks.release(str(tmp_path / "f0.lock"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("fid") / "mvdm_oe")
    result = run_main(["--config=configs/mvdm_oe.py:smoke", f"--workdir={workdir}"])
    assert result.returncode == 0, result.stderr
    return workdir


def _command(workdir, steps=2, seed=0):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "vdm_vae.evaluation.sample_fid",
                             f"--workdir={workdir}",
                             "--num_samples=12", "--batch=2", f"--steps={steps}", f"--seed={seed}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_processes_share_the_chunks_and_one_scores(trained):
    procs = [_command(trained), _command(trained)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    directory = sample_fid.out_dir(trained, "standard", 2)
    with open(os.path.join(directory, "fid.json")) as f:
        result = json.load(f)
    assert result["num_samples"] == 12 and result["steps"] == 2 and result["prior"] == "standard"
    assert result["checkpoint_step"] == 2 and np.isfinite(result["fid"]) and result["fid"] > 0
    assert len(result["fid_splits"]) == 5 and result["fid_split_size"] == 2
    assert np.load(os.path.join(directory, "features.npy")).shape == (12, 2048)
    with np.load(os.path.join(directory, "samples.npz")) as f:
        assert f["images"].shape[0] == 12
    assert not [n for n in os.listdir(directory) if ".lock" in n or ".partial" in n]
    assert os.path.exists(os.path.join(directory, "samples.png"))
    assert any(json.loads(out)["fid"] == result["fid"] for out, _ in outs if '"fid"' in out)

    again = _command(trained)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0 and json.loads(out)["fid"] == result["fid"], err


def test_another_plan_in_the_same_folder_is_one_line_error(trained):
    plan = {"num_samples": 12, "batch": 2, "seed": 0, "steps": 4, "prior": "standard",
            "checkpoint_step": 2}
    sample_fid.check_plan(sample_fid.out_dir(trained, "standard", 4), plan)
    proc = _command(trained, steps=4, seed=5)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2
    (line,) = err.strip().splitlines()
    assert "seed=0" in line and "5" in line, line


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pins one worker to each of 2 cores")
def test_protocol_fid_workers_share_the_sets_of_finished_runs(trained):
    root, run = os.path.split(trained)
    open(os.path.join(trained, "finished.json"), "w").close()
    env = dict(os.environ, PYTHONPATH=ROOT, ROOT=root, CONFIGS=f"{run},not_a_run", JOBS="2",
               FID_SAMPLES="6", FID_STEPS="3")
    script = os.path.join(ROOT, "experiments", "mnist_cpu.sh")
    started = subprocess.run([script, "fid"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0 and started.stdout.count("FID worker on core") == 2
    done = os.path.join(sample_fid.out_dir(trained, "standard", 3), "fid.json")
    for _ in range(600):
        logs = "".join(open(os.path.join(root, f"fid_{c}.log")).read() for c in (0, 1))
        if os.path.exists(done) and logs.count("[not_a_run] not finished") == 2:
            break
        time.sleep(1)
    with open(done) as f:
        assert json.load(f)["num_samples"] == 6
    stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert stopped.returncode == 0 and not os.path.exists(os.path.join(root, "fid.pids"))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="starts a worker on core 1")
def test_protocol_fid_workers_go_on_the_cores_asked(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, ROOT=str(tmp_path), CONFIGS="not_a_run",
               FID_CORES="1")
    script = os.path.join(ROOT, "experiments", "mnist_cpu.sh")
    started = subprocess.run([script, "fid"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert started.stdout.count("FID worker on core") == 1 and "core 1 " in started.stdout
    log = tmp_path / "fid_1.log"
    for _ in range(60):
        if log.exists() and "[not_a_run] not finished" in log.read_text():
            break
        time.sleep(1)
    assert "[not_a_run] not finished" in log.read_text()
    assert not (tmp_path / "fid_0.log").exists()
    subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=60)


def test_the_inception_pass_is_shared_by_chunk_and_never_repeated(tmp_path, monkeypatch):
    """Each chunk's features are made once, by whichever process claims it: a process that
    finds a chunk held leaves it, one restarted after the pass (e.g. interrupted in the
    reference statistics) makes none again, and features that are not the chunk's are remade."""
    from vdm_vae.metrics import fid

    calls = []

    def features_of(images, progress=True):
        calls.append(len(images))
        return np.full((len(images), fid.FEATURE_DIM), float(images[0, 0, 0, 0]))

    monkeypatch.setattr(fid, "inception_features", features_of)
    directory = str(tmp_path)
    for i, size in enumerate(sample_fid.chunk_sizes(10, 4)):  # chunks of 4, 4 and 2 images
        np.savez(os.path.join(directory, f"chunk_{i:05d}.npz"),
                 images=np.full((size, 4, 4, 1), i, np.uint8))
    held = os.path.join(directory, "features_00001.npy.lock")
    assert locks.claim(held)  # as another worker would
    assert sample_fid.feature_chunks(directory, 10, 4) == 2 and calls == [4, 2]
    assert sample_fid.gather_features(directory, 10, 4) is None  # chunk 1 is still held
    locks.release(held)  # its holder finished without making them
    assert sample_fid.feature_chunks(directory, 10, 4) == 1 and calls == [4, 2, 4]
    features = sample_fid.gather_features(directory, 10, 4)
    assert features.shape == (10, fid.FEATURE_DIM) and features.dtype == np.float32
    np.testing.assert_array_equal(features[:, 0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    assert sample_fid.feature_chunks(directory, 10, 4) == 0 and len(calls) == 3
    np.save(os.path.join(directory, "features_00002.npy"), np.zeros((1, fid.FEATURE_DIM)))
    assert sample_fid.feature_chunks(directory, 10, 4) == 1 and calls[-1] == 2
