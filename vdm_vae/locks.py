"""Lock files that let processes of one host share a list of jobs (e.g. chunks of samples).

A lock file holds its owner's host and pid; one left by a process that died is taken over.
"""

import os
import socket


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(path: str) -> bool:
    """Creates the lock file `path` holding this host and pid; False if another live process
    of this host holds it. A lock left by a dead process is taken over."""
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    host, pid = f.read().split()
            except (FileNotFoundError, ValueError):
                continue  # released or being written: try again
            if host != socket.gethostname() or _alive(int(pid)):
                return False
            os.remove(path)  # its process died
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def release(path: str):
    """Removes a lock file (already gone if another process took it over as stale)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
