"""End-to-end training through main.py: every config in smoke mode, resume, devices, errors."""

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import flax
import jax
import numpy as np
import pytest
from conftest import ROOT, TEST_XLA_FLAGS

CONFIG_FILES = sorted(os.path.basename(p)[:-3]
                      for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                      if not p.endswith(("base.py", "__init__.py")))
sys.path.insert(0, ROOT)
from configs import mnist_cpu  # noqa: E402 - the protocol's variants, one file

sys.path.remove(ROOT)
# Every config a run can name: each file, and each variant of the protocol's file, as
# "file" or "file:variant".
CONFIGS = [n for n in CONFIG_FILES if n != "mnist_cpu"] + [
    "mnist_cpu" if v == mnist_cpu.MAIN else f"mnist_cpu:{v}" for v in mnist_cpu.VARIANTS]


def run_main(args, devices=1, timeout=600, wait=True, tensorboard=False):
    """Runs `python main.py ARGS` in a fresh process with `devices` simulated CPU devices.

    Without `tensorboard`, a run given a config writes no TensorBoard files, which spares each
    process TensorFlow's start-up (seconds; it is tested on its own below).
    """
    args = list(args)
    if not tensorboard and any(a.startswith("--config=") for a in args):
        args.append("--config.training.tensorboard=False")
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}"
    env["PYTHONPATH"] = ROOT
    cmd = [sys.executable, os.path.join(ROOT, "main.py")] + list(args)
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def metric_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def final_params(workdir):
    from vdm_vae.training.checkpoints import load

    params, _ = load(workdir)
    return params


def assert_trees_close(a, b, **tol):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def _load_config(name: str, arg=None) -> dict:
    """configs/<file>.py's get_config(arg) as a dict, without its name, for `name` "file" or
    "file:variant" (the variant and `arg` joined by a comma)."""
    import importlib.util

    name, _, variant = name.partition(":")
    arg = ",".join(a for a in (variant, arg) if a) or None
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, ROOT)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(ROOT)
    config = module.get_config(arg).to_dict()
    config.pop("name")
    return config


# Options whose values combine into different code paths, not only each on its own: the
# encoder with the image's channels, and with the kind of score U-Net.
COMBINED_OPTIONS = (("data.synthetic_shape", "model.encoder.kind"),
                    ("model.sm_ch_mult", "model.encoder.kind"))


def _options(config: dict) -> set:
    """The smoke config's (field, value) pairs, with each loss weight and the w gate reduced
    to whether it is on (beta 1 or 10^4, capacity 10 or 30 nats take the same code path),
    and the pairs of COMBINED_OPTIONS as fields of their own."""
    loss = config["model"]["loss"]
    for key in ("beta", "capacity", "free_bits", "mmd_weight"):
        loss[key] = loss[key] > 0
    config["model"]["w_min_gamma"] = config["model"]["w_min_gamma"] is not None
    flat = {k: json.dumps(v) for k, v in flax.traverse_util.flatten_dict(config, sep=".").items()}
    for a, b in COMBINED_OPTIONS:
        flat[f"{a} x {b}"] = f"{flat[a]} x {flat[b]}"
    return set(flat.items())


def _covering_smoke_configs(options: dict) -> list:
    """Config files whose smoke runs, together, take every option value that any config file
    takes (greedy set cover over {name: _options}; ties by name). Smoke mode shrinks every size
    alike, so the 45 files take a handful of code paths; each file is built and checked above."""
    left, chosen = set().union(*options.values()), []
    while left:
        best = max(sorted(options), key=lambda name: len(options[name] & left))
        chosen.append(best)
        left -= options[best]
    return sorted(chosen)


SMOKE_OPTIONS = {name: _options(_load_config(name, "smoke")) for name in CONFIGS}
SMOKE_CONFIGS = _covering_smoke_configs(SMOKE_OPTIONS)


@pytest.mark.parametrize("arg", [None, "smoke"])
def test_every_config_file_builds_a_valid_model_config(arg):
    from vdm_vae.model.config import model_config_from_dict

    for name in CONFIGS:
        config = _load_config(name, arg)
        channels = 3 if config["data"]["name"] == "cifar10" else 1
        model_config_from_dict(config["model"], (28, 28, channels))


def test_the_covering_configs_take_every_option_value():
    every = set().union(*SMOKE_OPTIONS.values())
    assert set().union(*(SMOKE_OPTIONS[n] for n in SMOKE_CONFIGS)) == every
    assert {("model.w_prior_components", "10"), ("model.loss.mmd_weight", "true")} <= every
    assert len(SMOKE_CONFIGS) < len(CONFIGS) / 4


@pytest.mark.parametrize("name", SMOKE_CONFIGS)
def test_every_option_value_runs_two_smoke_steps(name, tmp_path):
    workdir = str(tmp_path / name.replace(":", "_"))
    tensorboard = name == SMOKE_CONFIGS[0]  # one run writes TensorBoard files, the rest not
    file, _, variant = name.partition(":")
    arg = f"{variant},smoke" if variant else "smoke"
    result = run_main([f"--config=configs/{file}.py:{arg}", f"--workdir={workdir}"],
                      tensorboard=tensorboard)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
    rows = metric_rows(workdir)
    keys = set().union(*rows)
    assert {"train/bpd", "train/objective", "eval/bpd", "train/images_per_sec"} <= keys
    assert rows[-1]["step"] == 2
    assert glob.glob(os.path.join(workdir, "images", "samples_*.png"))
    events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    assert bool(events) == (tensorboard and _clu_writers_available())


def _clu_writers_available() -> bool:
    try:
        from clu import metric_writers  # noqa: F401 - needs TensorFlow and TensorBoard
        return True
    except ImportError:
        return False


def test_sigkill_or_stop_at_step_resume_equals_uninterrupted_run(tmp_path):
    common = ["--config=configs/mvdm_oe.py:smoke", "--config.training.num_steps_train=6",
              "--config.training.steps_per_save=1", "--config.training.steps_per_eval=1000"]
    straight = str(tmp_path / "straight")
    assert run_main(common + [f"--workdir={straight}"]).returncode == 0
    finished = _finished(straight)
    assert finished["step"] == 6 and finished["evaluation"]["step"] == 6
    assert "eval/bpd" in finished["evaluation"]

    killed = str(tmp_path / "killed")
    proc = run_main(common + [f"--workdir={killed}"], wait=False)
    deadline = time.time() + 300
    while not os.path.isdir(os.path.join(killed, "checkpoints", "3")):
        assert proc.poll() is None and time.time() < deadline, "run ended before step 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.isdir(os.path.join(killed, "checkpoints", "5"))
    with open(os.path.join(killed, "finished.json"), "w") as f:  # stale: training goes on
        json.dump({"step": 2, "evaluation": {"step": 2}}, f)
    # Resumed as a pilot of the first 5 steps of the same 6-step schedule, then continued.
    stopped = run_main(common + [f"--workdir={killed}", "--config.training.stop_at_step=5"])
    assert stopped.returncode == 0, stopped.stderr
    assert "step 5/5" in stopped.stdout and "Stopped at step 5 of 6" in stopped.stdout
    assert "finished.json (step 2): the run goes on from step" in stopped.stdout
    assert not os.path.exists(os.path.join(killed, "finished.json"))
    resumed = run_main(common + [f"--workdir={killed}"])
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed from step 5 in " in resumed.stdout and "step 6/6" in resumed.stdout
    assert _finished(killed)["step"] == 6
    assert_trees_close(final_params(straight), final_params(killed), rtol=0, atol=0)
    steps = [row["step"] for row in metric_rows(killed) if "train/bpd" in row]
    assert steps == sorted(set(steps))  # rows the kill left past step 3 are not repeated

    # A config asking for fewer steps than the checkpoint has: refused, or finished by a flag
    # once its last step is evaluated (finished.json removed, as when that evaluation failed).
    fewer = common[:-3] + [f"--workdir={straight}", "--config.training.num_steps_train=5"]
    refused = run_main(fewer)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "is step 6, past config.training.num_steps_train=5" in line, line
    assert "--finish_at_checkpoint" in line
    os.remove(os.path.join(straight, "finished.json"))
    flagged = run_main(fewer + ["--finish_at_checkpoint"])
    assert flagged.returncode == 0, flagged.stderr
    assert "Evaluating step 6, the last, before marking the run finished." in flagged.stdout
    assert _finished(straight)["evaluation"]["step"] == 6


def _finished(workdir: str) -> dict:
    with open(os.path.join(workdir, "finished.json")) as f:
        return json.load(f)


def test_two_devices_equal_one_device(tmp_path):
    common = ["--config=configs/tvdm_oe.py:smoke", "--config.model.sm_pdrop=0.0",
              "--config.training.batch_size_train=8", "--config.training.num_steps_train=3",
              "--config.training.steps_per_eval=3", "--config.training.batch_size_eval=8"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    r1 = run_main(common + [f"--workdir={one}"], devices=1)
    r2 = run_main(common + [f"--workdir={two}"], devices=2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    loss1 = [r["train/objective"] for r in metric_rows(one) if "train/objective" in r]
    loss2 = [r["train/objective"] for r in metric_rows(two) if "train/objective" in r]
    np.testing.assert_allclose(loss1, loss2, rtol=1e-5)
    assert_trees_close(final_params(one), final_params(two), rtol=1e-4, atol=1e-6)
    eval1, eval2 = ([r["eval/bpd"] for r in metric_rows(w) if "eval/bpd" in r] for w in (one, two))
    assert len(eval1) == 1  # the bound's noise is drawn per example, not per device
    np.testing.assert_allclose(eval1, eval2, rtol=1e-5)


def test_substeps_scan_equals_plain_steps(tmp_path):
    common = ["--config=configs/mvdm.py:smoke", "--config.training.num_steps_train=4",
              "--config.training.steps_per_eval=1000", "--config.training.steps_per_save=2",
              "--config.training.steps_per_logging=2"]
    plain, scanned = str(tmp_path / "plain"), str(tmp_path / "scan")
    assert run_main(common + [f"--workdir={plain}"]).returncode == 0
    r = run_main(common + [f"--workdir={scanned}", "--config.training.substeps=2"])
    assert r.returncode == 0, r.stderr
    assert_trees_close(final_params(plain), final_params(scanned), rtol=1e-4, atol=1e-6)



def test_training_reproduces_the_run_pinned_before_prefetching_and_background_saves(tmp_path):
    # tests/fixtures/smoke_run was trained by the loop that fetched each batch in the step and
    # waited for each checkpoint; trained again now, with both on by default, as it was made.
    workdir = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("XLA_FLAGS")
    result = subprocess.run([sys.executable, "main.py", "--config=configs/mvdm_oe.py:smoke",
                             f"--workdir={workdir}", "--config.training.tensorboard=False"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    pinned = final_params(os.path.join(ROOT, "tests", "fixtures", "smoke_run"))
    assert_trees_close(final_params(workdir), pinned, rtol=0, atol=0)
    saves = [row for row in metric_rows(workdir) if "checkpoint/seconds" in row]
    assert [row["step"] for row in saves] == [1, 2]
    (evaluation,) = [row for row in metric_rows(workdir) if "eval/bpd" in row]
    parts = sum(evaluation[f"eval/seconds_{p}"] for p in ("bound", "probe", "figures"))
    assert 0 < parts <= evaluation["eval/seconds"] * (1 + 1e-9)
    assert re.search(r"eval step 2: .* \(\d+\.\d s: bound \d+\.\d, probe \d+\.\d, "
                     r"figures \d+\.\d\)", result.stdout)


TIMES = ("time", "train/steps_per_sec", "train/images_per_sec", "train/cpu_seconds",
         "eval/cpu_seconds", "eval/seconds", "eval/seconds_bound", "eval/seconds_probe",
         "eval/seconds_figures", "checkpoint/seconds")


def test_prefetching_and_background_saves_change_no_number(tmp_path):
    common = ["--config=configs/mvdm.py:smoke", "--config.training.num_steps_train=8",
              "--config.training.substeps=2", "--config.training.steps_per_logging=4",
              "--config.training.steps_per_save=2", "--config.training.steps_per_eval=4"]
    runs = {"on": [], "off": ["--config.training.prefetch_batches=0",
                              "--config.training.async_checkpoints=False"]}
    rows, params = {}, {}
    for name, flags in runs.items():
        workdir = str(tmp_path / name)
        result = run_main(common + flags + [f"--workdir={workdir}"])
        assert result.returncode == 0, result.stderr
        rows[name] = [{k: v for k, v in row.items() if k not in TIMES}
                      for row in metric_rows(workdir)]
        params[name] = final_params(workdir)
    assert rows["on"] == rows["off"]
    assert [row["step"] for row in rows["on"] if "train/bpd" in row] == [2, 4, 6, 8]
    assert [row["step"] for row in rows["on"] if "eval/bpd" in row] == [4, 8]
    assert_trees_close(params["on"], params["off"], rtol=0, atol=0)

BAD_CONFIGS = [
    (["--config=configs/mvdm_oe.py:smoke", "--config.data.source=imagenet"], "data.source"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.training.num_steps_train=-5"],
     "training.num_steps_train"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.model.encoder.w_dim=0"], "encoder.w_dim"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.training.batch_size_train=0"],
     "batch_size_train"),
    (["--config=configs/no_such_config.py"], "no_such_config"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.training.nosuchfield=1"],
     "config.training has no field 'nosuchfield'"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.model.encoder.wdim=1"],
     "--config.model.encoder.w_dim"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.data.name=nosuchset"],
     "config.data.name='nosuchset' has no effect"),
    (["--config=configs/mvdm_oe.py:bogus"], "'bogus' is unknown"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.training.steps_per_save=2",
      "--config.training.checkpoints_keep_period=3"],
     "config.training.checkpoints_keep_period=3 is invalid: expected 0 (off) or a multiple of "
     "training.steps_per_save=2"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.training.stop_at_step=3"],
     "config.training.stop_at_step=3 is invalid: expected 0 (off) or a step <= "
     "training.num_steps_train=2"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.data.synthetic_train=3"],
     "'synthetic' has 3 training images, fewer than one batch "
     "(config.training.batch_size_train=8)"),
    (["--config=configs/mvdm_oe.py:smoke", "--config.data.synthetic_test=2"],
     "has 2 test images, fewer than one batch (config.training.batch_size_eval=8)"),
]


@pytest.mark.parametrize("args,message", BAD_CONFIGS)
def test_bad_config_fails_in_one_line_before_any_work(args, message, tmp_path):
    workdir = str(tmp_path / "bad")
    result = run_main(args + [f"--workdir={workdir}"], devices=2)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not os.path.exists(workdir)  # checked before the workdir is made


def test_workdir_that_is_a_file_fails_in_one_line(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    for mode in ("train", "eval"):
        result = run_main(["--config=configs/mvdm.py:smoke", f"--workdir={path}",
                           f"--mode={mode}"])
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"error: --workdir='{path}' is a file: expected a folder (new or of an earlier run)."]


def test_divergence_before_any_save_says_so(tmp_path):
    result = run_main(["--config=configs/mvdm.py:smoke", f"--workdir={tmp_path / 'run'}",
                       "--config.optimizer.learning_rate=1e6",
                       "--config.optimizer.lr_warmup_steps=0",
                       "--config.optimizer.gradient_clip_norm=1e9",
                       "--config.training.num_steps_train=20",
                       "--config.training.steps_per_save=1000",
                       "--config.training.steps_per_eval=1000"])
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "non-finite loss or gradient at step" in line
    assert "no checkpoint was saved before it" in line


def test_resume_with_other_w_dim_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    base = ["--config=configs/mvdm_oe.py:smoke", f"--workdir={workdir}"]
    assert run_main(base).returncode == 0
    result = run_main(base + ["--config.model.encoder.w_dim=4"])
    assert result.returncode != 0
    assert "w_dim" in result.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_exits_with_its_code_and_resumes(sig, code, tmp_path):
    workdir = str(tmp_path / "run")
    common = ["--config=configs/mvdm.py:smoke", f"--workdir={workdir}",
              "--config.training.num_steps_train=100000", "--config.training.steps_per_save=1000",
              "--config.training.steps_per_eval=100000", "--config.training.steps_per_logging=1"]
    proc = run_main(common, wait=False)
    for line in proc.stdout:  # stop once training runs
        if line.startswith("step 3/"):
            break
    proc.send_signal(sig)
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == code, out
    saved = [line for line in out.splitlines() if line.startswith(f"Signal {int(sig)}: saved")]
    assert len(saved) == 1, out
    step = int(saved[0].split("saved step ")[1].split()[0])
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))
    assert not os.path.exists(os.path.join(workdir, "finished.json"))
    if sig != signal.SIGINT:
        return  # resuming does not depend on the signal: once is enough
    resumed = run_main(common[:2] + [f"--config.training.num_steps_train={step + 1}"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed from step {step} in " in resumed.stdout
    assert _finished(workdir)["step"] == step + 1


def test_a_signal_during_the_setup_stops_before_the_first_step(tmp_path, monkeypatch):
    import ml_collections

    from vdm_vae.training import loop as train

    config = ml_collections.ConfigDict(_load_config("mvdm", "smoke"))
    load_dataset = train.data_lib.load_dataset

    def load_then_signal(data_config):  # SIGINT while the run is still setting up
        dataset = load_dataset(data_config)
        os.kill(os.getpid(), signal.SIGINT)
        return dataset

    monkeypatch.setattr(train.data_lib, "load_dataset", load_then_signal)
    handler = signal.getsignal(signal.SIGINT)
    workdir = tmp_path / "run"
    with pytest.raises(train.Stopped) as stopped:
        train.train_and_evaluate(config, str(workdir))
    assert (stopped.value.signum, stopped.value.step, stopped.value.exit_code) == (
        signal.SIGINT, 0, 130)
    assert signal.getsignal(signal.SIGINT) is handler
    assert not glob.glob(str(workdir / "checkpoints" / "[0-9]*"))
    assert not (workdir / "finished.json").exists()


def test_corrupt_newest_checkpoint_falls_back_with_quiet_logs(tmp_path):
    workdir = str(tmp_path / "run")
    common = ["--config=configs/mvdm.py:smoke", f"--workdir={workdir}",
              "--config.training.steps_per_eval=1000"]
    first = run_main(common)
    assert first.returncode == 0, first.stderr
    assert not _info_lines(first.stderr), first.stderr  # third-party INFO is off by default
    with open(os.path.join(workdir, "checkpoints", "2", "default", "_METADATA"), "r+b") as f:
        f.truncate(100)
    resumed = run_main(common + ["--config.training.num_steps_train=3"])
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and os.path.join("checkpoints", "2") in warnings[0], warnings
    assert "Resumed from step 1 in " in resumed.stdout
    assert os.path.isdir(os.path.join(workdir, "checkpoints_unreadable", "2"))
    assert not _info_lines(resumed.stderr), resumed.stderr
    assert "Traceback" not in resumed.stderr and "Exception ignored" not in resumed.stderr

    verbose = run_main(common + ["--config.training.num_steps_train=4", "--verbosity=0"])
    assert verbose.returncode == 0 and _info_lines(verbose.stderr), verbose.stderr


def _info_lines(stderr: str) -> list:
    """absl-formatted INFO lines (`I1130 08:14:25.606 ... file.py:12] ...`)."""
    return [line for line in stderr.splitlines() if re.match(r"I\d{4} \d\d:\d\d", line)]


# ------------------------------------------------------------- the run folder, one writer


def test_a_second_writer_of_a_run_exits_2_naming_the_first(tmp_path):
    workdir = str(tmp_path / "run")
    common = ["--config=configs/mvdm.py:smoke", f"--workdir={workdir}",
              "--config.training.num_steps_train=100000", "--config.training.steps_per_save=1000",
              "--config.training.steps_per_eval=100000"]
    first = run_main(common, wait=False)
    for line in first.stdout:  # stop once training runs
        if line.startswith("step 2/"):
            break
    try:
        for mode in ("train", "eval"):
            second = run_main(common + [f"--mode={mode}"], timeout=300)
            assert second.returncode == 2, second.stdout + second.stderr
            (line,) = second.stderr.strip().splitlines()
            assert line.startswith(f"error: {workdir} is in use by training (pid {first.pid} on "
                                   f"{os.uname().nodename}, since "), line
    finally:
        first.send_signal(signal.SIGTERM)
        out = first.stdout.read()
        first.wait(timeout=300)
    assert first.returncode == 143, out
    steps = [row["step"] for row in metric_rows(workdir)]
    assert steps == sorted(steps)  # one writer: no rows of another process in between


def test_a_checkpoints_file_ends_in_one_line_not_a_hang(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("junk")
    result = run_main(["--config=configs/mvdm.py:smoke", f"--workdir={workdir}"], timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {workdir}/checkpoints is a file: expected the folder of the run's checkpoints; "
        "move the file away (or use a new workdir)."]
    assert not (workdir / "metrics.jsonl").exists()


def _npz(path, train_images, test_images=None):
    test_images = np.zeros((8, 8, 8, 1), np.uint8) if test_images is None else test_images
    np.savez(path, train_images=train_images, test_images=test_images)


BAD_FILES = [
    ("data.npz", lambda p: p.write_bytes(b""), "config.data.path='{path}' is empty (0 bytes)"),
    ("data.npz", lambda p: p.write_text("1,2,3\n"),
     "config.data.path='{path}' is not an .npz file, or is cut short"),
    ("data.npz", lambda p: _npz(p, np.zeros((16, 1, 8, 8), np.uint8)),
     "has shape (16, 1, 8, 8): expected channels last [N, H, W, C] with C <= 4; it looks "
     "channels first"),
    ("run/config.json", lambda p: p.write_text('{"config": {"na'),
     "{path} is not valid JSON (truncated or damaged: "),
    ("run/config.json", lambda p: p.write_text("[]"), "{path} holds a JSON list: expected"),
]


@pytest.mark.parametrize("name,write,message", BAD_FILES)
def test_a_bad_data_or_config_file_is_one_line_naming_it(name, write, message, tmp_path):
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    write(path)
    data = (["--config.data.source=npz", f"--config.data.path={path}"]
            if name.endswith(".npz") else [])
    result = run_main(["--config=configs/mvdm.py:smoke", f"--workdir={tmp_path / 'run'}"]
                      + data, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message.format(path=path) in line, line


def _mount_namespace() -> bool:
    """Whether this process may run a command in a mount namespace of its own (root, with
    `unshare`), where a read-only or full folder can be mounted without touching the host."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def run_main_mounted(mount: str, args, timeout=300):
    """run_main's command in a mount namespace where the shell command `mount` ran first; its
    stdout ends with `rc=<exit code>` and the listing of the workdir's checkpoints/ (if any),
    taken before the mount goes."""
    args = list(args) + ["--config.training.tensorboard=False"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=1 {TEST_XLA_FLAGS}"
    cmd = " ".join(shlex.quote(c) for c in [sys.executable, os.path.join(ROOT, "main.py")] + args)
    return subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && {cmd}; echo rc=$?; "
                           f"ls -a {shlex.quote(args[1].split('=', 1)[1])}/checkpoints "
                           "2>/dev/null"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not _mount_namespace(), reason="needs root and unshare (mount namespaces)")
def test_a_read_only_or_full_workdir_is_one_line(tmp_path):
    """A read-only folder: refused before any work. A full disk at the first save: one line
    naming the cause, no partial step left, no traceback of Orbax's threads."""
    base = ["--config=configs/mvdm.py:smoke"]
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    result = run_main_mounted(f"mount --bind -o ro {read_only} {read_only}",
                              base + [f"--workdir={read_only}"])
    assert "rc=2" in result.stdout, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the workdir {read_only} cannot be written (Read-only file system): training "
        "writes there; use a folder you can write to."]

    full = tmp_path / "full"
    full.mkdir()
    result = run_main_mounted(f"mount -t tmpfs -o size=160k tmpfs {full}",
                              base + [f"--workdir={full}/run"])
    assert "rc=2" in result.stdout, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"error: could not save step 1 in {full}/run/checkpoints (No space left on "
                    "device: free space there, then run again to resume); no checkpoint was "
                    "saved before it."), line
    assert result.stdout.splitlines()[-2:] == [".", ".."]  # checkpoints/ holds nothing
