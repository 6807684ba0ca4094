"""Lock files: one writer per run folder, and chunks of work shared between processes.

A lock is a `flock` on its file, which the kernel drops when the holding process ends, however
it ends: a lock left by a killed process is free at once, with no stale-lock guessing (a pid
written in the file could be reused, and two processes could both judge it dead). The file
holds its holders' host and pid, for people; the lock itself is the `flock`.

  claim(path) / release(path)          one chunk of a shared job (e.g. sample_fid's chunks)
  with hold_workdir(workdir, "training"):   the run folder's writer (workdir/run.lock)
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator, List

from vdm_vae.runtime.console import warn

WORKDIR_LOCK = "run.lock"

_held: dict[str, int] = {}  # path -> descriptor holding its lock, in this process


def claim(path: str) -> bool:
    """Takes the lock of `path` (creating the file); False if another holder has it, in this
    process or another. Released by `release(path)` or by the end of this process."""
    if path in _held:
        return False
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder released (removed) it between our open and flock: again
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
    _held[path] = fd
    return True


def release(path: str):
    """Removes the lock file of `path` and drops its lock (nothing if this process holds none).
    The file goes first, so that a process that opened it meanwhile sees it unlinked and retries."""
    fd = _held.pop(path, None)
    if fd is None:
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        pass  # removed by hand meanwhile
    finally:
        os.close(fd)


class WorkdirBusy(ValueError):
    """Another process writes the run folder (a user error: one line, exit code 2)."""


@contextlib.contextmanager
def hold_workdir(workdir: str, what: str, shared: bool = False) -> Iterator[None]:
    """Holds the lock of `workdir` (workdir/run.lock, the folder made if missing) in the block.

    One process writes a run at a time: training, `--mode=eval` and fit_prior hold the lock
    alone; `shared` holders (sample_fid's workers, which split one job by chunk locks) hold it
    together, but never beside an exclusive holder. The file lists the holders, one JSON line
    each ({"what", "pid", "host", "since"}); a holder that ended without releasing (killed) left
    its line, and the next holder takes the lock over with a warning naming it.

    Raises:
      WorkdirBusy: naming the holders (what, pid, host) when the lock is taken.
      ValueError: the folder cannot be written (read-only, no permission).
    """
    fd = _open(workdir, what)
    try:
        _acquire(fd, workdir, what, shared)
    except BaseException:
        os.close(fd)  # not held: the holders' lines stay as they are
        raise
    try:
        yield
    finally:
        _release(fd, shared)


@contextlib.contextmanager
def hold_run(workdir: str, what: str, shared: bool = False) -> Iterator[None]:
    """`hold_workdir` for a command that may run as several JAX processes: process 0 holds the
    lock, and every process raises (the same error) when it cannot, so none waits for it."""
    import jax

    if jax.process_count() == 1:
        with hold_workdir(workdir, what, shared):
            yield
        return
    import numpy as np
    from jax.experimental import multihost_utils

    with contextlib.ExitStack() as stack:
        error = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(hold_workdir(workdir, what, shared))
            except ValueError as e:
                error = e
        failed = multihost_utils.process_allgather(np.int32(error is not None))
        if error is not None:
            raise error
        if int(np.max(failed)):
            raise WorkdirBusy(f"process 0 could not take the lock of {workdir} (see its error).")
        yield


def _open(workdir: str, what: str) -> int:
    try:
        os.makedirs(workdir, exist_ok=True)
        return os.open(os.path.join(workdir, WORKDIR_LOCK), os.O_CREAT | os.O_RDWR | os.O_APPEND,
                       0o644)
    except OSError as error:
        raise ValueError(f"the workdir {workdir} cannot be written ({error.strerror}): {what} "
                         "writes there; use a folder you can write to.") from error


def _acquire(fd: int, workdir: str, what: str, shared: bool):
    """flock `fd` (shared or not) and add this process's line; WorkdirBusy if it is held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
    if alone:
        left = _holders(fd)
        if left:
            warn(f"took over the lock of {workdir} from {_describe(left)}, which ended without "
                 "releasing it (killed?).")
        os.ftruncate(fd, 0)
    if shared:  # the first holder converts its exclusive lock (or fails like any other)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            alone = False
        else:
            alone = True
    if not alone:
        raise WorkdirBusy(f"{workdir} is in use by {_describe(_live(_holders(fd)))}: one process "
                          "writes a run at a time; wait for it to end, or stop it.")
    line = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.write(fd, (json.dumps(line) + "\n").encode())


def _release(fd: int, shared: bool):
    """Empties the holders' list when this is the last holder, then drops the lock."""
    try:
        if shared:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only the last shared holder gets it
        os.ftruncate(fd, 0)
    except OSError:
        pass  # other shared holders remain: the last of them empties the list
    finally:
        os.close(fd)


def _holders(fd: int) -> List[dict]:
    """The holder lines of the lock file (unreadable lines skipped)."""
    text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
    holders = []
    for line in text.splitlines():
        try:
            holders.append(dict(json.loads(line)))
        except (ValueError, TypeError):
            continue
    return holders


def _live(holders: List[dict]) -> List[dict]:
    """The holders not known to be dead (a pid on this host that no longer runs is dead)."""
    host = socket.gethostname()

    def alive(h: dict) -> bool:
        if h.get("host") != host:
            return True
        try:
            pid = int(h.get("pid", 0))
            if pid <= 0:
                return True
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True

    return [h for h in holders if alive(h)] or holders


def _describe(holders: List[dict]) -> str:
    """`training (pid 12 on host, since 2025-01-01T10:00:00)`, joined by commas."""
    if not holders:
        return "another process"
    return ", ".join(f"{h.get('what', '?')} (pid {h.get('pid', '?')} on {h.get('host', '?')}, "
                     f"since {h.get('since', '?')})" for h in holders)
