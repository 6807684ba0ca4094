"""Restore falls back from an unreadable newest checkpoint to the newest readable one."""

import errno
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from vdm_vae.training.checkpoints import (
    CONFIG_FILE,
    UNREADABLE_DIR,
    Checkpointer,
    SaveFailed,
    load_run_config,
    open_saved,
)


def _state(value: float) -> dict:
    w = np.random.default_rng(int(value)).normal(size=(64, 64)).astype(np.float32)
    return {"step": np.asarray(value, np.int32),
            "params": {"w": w, "b": np.arange(3, dtype=np.float32) + value}}


def _save_steps(workdir: str, steps=(1, 2)) -> str:
    ckpt = Checkpointer(workdir)
    for step in steps:
        ckpt.save(step, _state(step))
    ckpt.close()
    return ckpt.directory


def _truncate(path: str):
    with open(path, "r+b") as f:
        f.truncate(max(os.path.getsize(path) // 2, 1) - 1)


def _truncate_metadata(step_dir: str):
    _truncate(os.path.join(step_dir, "default", "_METADATA"))


def _truncate_array_file(step_dir: str):
    files = glob.glob(os.path.join(step_dir, "default", "ocdbt.process_*", "d", "*"))
    _truncate(max(files, key=os.path.getsize))


def _remove_manifest(step_dir: str):
    os.remove(os.path.join(step_dir, "default", "manifest.ocdbt"))


@pytest.mark.parametrize("corrupt", [_truncate_metadata, _truncate_array_file, _remove_manifest])
def test_unreadable_newest_step_is_moved_aside_and_previous_restored(corrupt, tmp_path, capsys):
    workdir = str(tmp_path)
    directory = _save_steps(workdir)
    corrupt(os.path.join(directory, "2"))
    ckpt = Checkpointer(workdir)
    state = ckpt.restore(_state(0))
    ckpt.close()
    assert ckpt.restored_step == 1
    np.testing.assert_array_equal(state["params"]["w"], _state(1)["params"]["w"])
    assert sorted(os.listdir(directory)) == ["1"]
    assert os.path.isdir(os.path.join(workdir, UNREADABLE_DIR, "2", "default"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and os.path.join(directory, "2") in lines[0], lines


def test_no_readable_step_names_the_folder(tmp_path, capsys):
    workdir = str(tmp_path)
    directory = _save_steps(workdir, steps=(1,))
    _truncate_metadata(os.path.join(directory, "1"))
    ckpt = Checkpointer(workdir)
    with pytest.raises(FileNotFoundError, match="no readable checkpoint in .*checkpoints"):
        ckpt.restore(_state(0))
    ckpt.close()
    assert os.path.isdir(os.path.join(workdir, UNREADABLE_DIR, "1"))
    assert "unreadable" in capsys.readouterr().out


def test_readable_newest_step_is_restored_untouched(tmp_path):
    workdir = str(tmp_path)
    directory = _save_steps(workdir)
    ckpt = Checkpointer(workdir)
    state = ckpt.restore(_state(0))
    ckpt.close()
    assert ckpt.restored_step == 2 and int(state["step"]) == 2
    assert sorted(os.listdir(directory)) == ["1", "2"]
    assert not os.path.exists(os.path.join(workdir, UNREADABLE_DIR))


def test_step_that_reads_but_does_not_fit_raises_and_stays(tmp_path):
    workdir = str(tmp_path)
    directory = _save_steps(workdir)
    other = {"step": np.asarray(0, np.int32), "params": {"w": np.zeros((3, 3), np.float32)}}
    ckpt = Checkpointer(workdir)
    with pytest.raises(Exception):  # noqa: B017 - Orbax's own error for a structure mismatch
        ckpt.restore(other)
    ckpt.close()
    assert sorted(os.listdir(directory)) == ["1", "2"]


def test_truncated_array_fallback_prints_one_line(tmp_path):
    """In a fresh process: the failed reads' late callbacks print no tracebacks."""
    workdir = str(tmp_path)
    directory = _save_steps(workdir)
    _truncate_array_file(os.path.join(directory, "2"))
    code = ("import sys, numpy as np; sys.path.insert(0, 'tests'); "
            "from test_checkpoints import _state; "
            "from vdm_vae.training.checkpoints import Checkpointer; "
            f"c = Checkpointer({workdir!r}); c.restore(_state(0)); c.close(); "
            "print('restored', c.restored_step)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "restored 1"
    assert "Event loop is closed" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_keep_period_keeps_its_multiples_beside_the_newest(tmp_path):
    workdir = str(tmp_path)
    ckpt = Checkpointer(workdir, max_to_keep=2, keep_period=4)
    for step in range(1, 10):
        ckpt.save(step, _state(step))
    ckpt.close()
    ckpt = Checkpointer(workdir)
    assert ckpt.all_steps() == [4, 8, 9]
    state = ckpt.restore_raw(4)
    assert ckpt.restored_step == 4
    np.testing.assert_array_equal(state["params"]["b"], _state(4)["params"]["b"])
    with pytest.raises(ValueError, match=r"step=5 has no checkpoint .* steps are \[4, 8, 9\]"):
        ckpt.restore_raw(5)
    ckpt.close()


def test_opening_a_workdir_without_checkpoints_names_it_and_creates_nothing(tmp_path):
    """A run restored from its record (results, no checkpoints) stays as it was."""
    with pytest.raises(FileNotFoundError, match=r"has no checkpoints/ folder.*record"):
        open_saved(str(tmp_path))
    assert os.listdir(tmp_path) == []
    _save_steps(str(tmp_path))
    ckpt = open_saved(str(tmp_path))
    assert ckpt.all_steps() == [1, 2]
    ckpt.close()


@pytest.mark.parametrize("content, message", [
    ('{"config": {"name": "mvdm"}, "mod', r"is not valid JSON \(truncated or damaged: "),
    ("{}", r"holds an object with keys \[\]: expected the run's config"),
    ("[]", r"holds a JSON list: expected the run's config"),
])
def test_a_damaged_config_json_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / CONFIG_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{path} " + message) as error:
        load_run_config(str(tmp_path))
    assert "\n" not in str(error.value)


def test_checkpoints_that_is_a_file_is_refused_before_orbax_sees_it(tmp_path):
    (tmp_path / "checkpoints").write_text("junk")
    with pytest.raises(NotADirectoryError, match=r"checkpoints is a file: expected the folder"):
        Checkpointer(str(tmp_path))


def test_a_full_disk_at_save_is_one_line_and_leaves_no_partial_step(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    _save_steps(workdir, steps=(1,))
    ckpt = Checkpointer(workdir)

    def disk_full(step, args, force):  # as Orbax fails: a half-written temporary folder
        del args, force
        partial = os.path.join(ckpt.directory, f"{step}.orbax-checkpoint-tmp-1234")
        os.makedirs(os.path.join(partial, "default"))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(partial, "default"))

    monkeypatch.setattr(ckpt.manager, "save", disk_full)
    with pytest.raises(SaveFailed) as error:
        ckpt.save(2, _state(2))
    assert str(error.value) == (
        f"could not save step 2 in {ckpt.directory} (No space left on device: free space "
        "there, then run again to resume); the newest checkpoint is step 1.")
    assert sorted(os.listdir(ckpt.directory)) == ["1"]
    monkeypatch.undo()
    ckpt.close()


def test_a_background_save_returns_before_the_files_and_its_failure_comes_at_the_wait(
        tmp_path, monkeypatch):
    workdir = str(tmp_path)
    _save_steps(workdir, steps=(1,))
    ckpt = Checkpointer(workdir)
    ckpt.save(2, _state(2), wait=False)
    ckpt.wait()
    assert sorted(os.listdir(ckpt.directory)) == ["1", "2"]

    reported = []

    def fails_later():  # as Orbax's thread reports, once, a write that failed in the background
        if reported:
            return
        reported.append(True)
        partial = os.path.join(ckpt.directory, "3.orbax-checkpoint-tmp-99")
        os.makedirs(os.path.join(partial, "default"), exist_ok=True)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), partial)

    ckpt.save(3, _state(3), wait=False)
    ckpt.manager.wait_until_finished()  # the real write ends; then it is made to have failed
    monkeypatch.setattr(ckpt.manager, "wait_until_finished", fails_later)
    with pytest.raises(SaveFailed, match=r"^could not save step 3 in .*No space left on device"
                       r".*; the newest checkpoint is step 2\.$"):
        ckpt.close()
    assert "3.orbax-checkpoint-tmp-99" not in os.listdir(ckpt.directory)
