"""A progress line with rate and ETA for long loops; the training loop's steady step rate."""

import sys
import time
from typing import Optional


class StepTimer:
    """Training steps per second over the time spent in training steps only.

    `start` after the first (compiling) step; `restart` after evaluation or saving, so that
    neither counts. The rate is over the current window (since the last restart).
    """

    def __init__(self):
        self.running = False
        self._time, self._step = 0.0, 0

    def start(self, step: int):
        self.running = True
        self.restart(step)

    def restart(self, step: int):
        self._time, self._step = time.time(), step

    def steps_per_sec(self, step: int) -> Optional[float]:
        """Rate since the last (re)start, None before any timed step."""
        if not self.running or step <= self._step:
            return None
        return (step - self._step) / max(time.time() - self._time, 1e-9)


class Progress:
    """Prints `desc: done/total (pct) rate ETA` at most every `interval` seconds."""

    def __init__(self, total: int, desc: str, unit: str = "it", interval: float = 5.0):
        self.total, self.desc, self.unit, self.interval = max(total, 1), desc, unit, interval
        self.done, self.start, self.last = 0, time.time(), 0.0

    def update(self, n: int = 1):
        self.set(self.done + n)

    def set(self, done: int):
        """Sets the count done so far (e.g. counted on disk, whoever did the work)."""
        self.done = done
        now = time.time()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate > 0 else "--"
        return (f"{self.desc}: {self.done}/{self.total} ({100.0 * self.done / self.total:.0f}%) "
                f"{rate:.1f} {self.unit}/s ETA {eta}")
