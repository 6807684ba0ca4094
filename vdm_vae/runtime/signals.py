"""SIGINT / SIGTERM: how a command stops, and the exit code it stops with (128 + the signal).

Training turns the signals into a flag that its loop checks (`vdm_vae.training.loop`); a
command whose work is one whole (an evaluation) is interrupted where it is by `Interrupts`,
until it starts to commit its result.
"""

import contextlib
import signal
from typing import Optional


class Stopped(Exception):
    """A command stopped on a signal at `step`; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, step: Optional[int] = None):
        super().__init__(f"signal {signum}: stopped at step {step}.")
        self.signum, self.step, self.exit_code = signum, step, 128 + signum


class Interrupted(BaseException):
    """Raised by `Interrupts` where the main thread is when a signal comes (a BaseException,
    so that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


class Interrupts(contextlib.AbstractContextManager):
    """Inside the block, SIGINT / SIGTERM raise `Interrupted`; after `hold()` they are only
    recorded in `received` (e.g. while a result is renamed into place), for the caller to stop
    once it is whole. With raising=False they are only recorded from the start (a loop that
    checks `received` and stops where it chooses)."""

    def __init__(self, raising: bool = True):
        self.received: Optional[int] = None
        self._raising = raising
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.received = signum
        if self._raising:
            raise Interrupted(signum)

    def hold(self):
        """From now on, a signal is recorded, not raised."""
        self._raising = False

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False
