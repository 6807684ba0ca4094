"""Lock files that let processes of one host share a list of jobs (e.g. chunks of samples).

A lock is an exclusive `flock` on its file, which the kernel drops when the holding process ends,
however it ends: a lock left by a killed process is free at once, with no stale-lock guessing
(a pid written in the file could be reused, and two processes could both judge it dead). The
file holds its holder's host and pid, for people; the lock itself is the `flock`.
"""

import fcntl
import os
import socket

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
