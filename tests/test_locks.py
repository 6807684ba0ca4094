"""The workdir lock: one writer per run folder, sample_fid's workers together, none outliving
its process (`vdm_vae.runtime.locks.hold_workdir`)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from vdm_vae.runtime import locks

_HOLDER = """
import sys
from vdm_vae.runtime import locks
try:
    with locks.hold_workdir(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared"):
        print("held", flush=True)
        sys.stdin.read()  # holds the lock until its stdin closes
except locks.WorkdirBusy as error:
    print("busy", error, flush=True)
"""


def _holder(workdir, what="training", shared=False):
    """A process that holds (or fails to hold) the workdir's lock until its stdin closes;
    (it, the first line it printed)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir), what,
                             "shared" if shared else "alone"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def test_a_second_writer_is_told_who_holds_the_run(tmp_path):
    proc, line = _holder(tmp_path, "training")
    assert line == "held"
    with pytest.raises(locks.WorkdirBusy) as busy:
        with locks.hold_workdir(str(tmp_path), "evaluation (--mode=eval)"):
            pass
    message = str(busy.value)
    assert f"training (pid {proc.pid} on {os.uname().nodename}, since " in message
    assert "\n" not in message
    with pytest.raises(locks.WorkdirBusy):  # nor can a sample_fid worker join a training
        with locks.hold_workdir(str(tmp_path), "sample_fid", shared=True):
            pass
    proc.communicate()
    with locks.hold_workdir(str(tmp_path), "evaluation"):  # released when its holder ended
        with open(tmp_path / locks.WORKDIR_LOCK) as f:
            assert json.loads(f.read())["pid"] == os.getpid()
    assert (tmp_path / locks.WORKDIR_LOCK).read_text() == ""  # released: nobody named


def test_sample_fid_workers_share_the_lock_but_keep_other_writers_out(tmp_path):
    first, line_first = _holder(tmp_path, "sample_fid", shared=True)
    second, line_second = _holder(tmp_path, "sample_fid", shared=True)
    assert (line_first, line_second) == ("held", "held")
    training, line = _holder(tmp_path, "training")
    assert line.startswith("busy ") and "sample_fid (pid" in line
    training.communicate()
    for proc in (first, second):
        proc.communicate()
    assert (tmp_path / locks.WORKDIR_LOCK).read_text() == ""  # the last one emptied it


def test_a_lock_left_by_a_killed_holder_is_taken_over_with_a_warning(tmp_path, capsys):
    proc, line = _holder(tmp_path, "training")
    assert line == "held"
    proc.kill()  # dies holding it: its line stays in the file, the flock goes with it
    proc.wait()
    with locks.hold_workdir(str(tmp_path), "training"):
        pass
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"warning: took over the lock of {tmp_path} "
                                               f"from training (pid {proc.pid} on ")


def test_a_workdir_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"the workdir .*file/run cannot be written \(Not a "
                                         r"directory\): training writes there"):
        with locks.hold_workdir(str(blocker / "run"), "training"):
            pass
