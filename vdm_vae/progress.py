"""A progress line with rate and ETA for long loops."""

import sys
import time


class Progress:
    """Prints `desc: done/total (pct) rate ETA` at most every `interval` seconds."""

    def __init__(self, total: int, desc: str, unit: str = "it", interval: float = 5.0):
        self.total, self.desc, self.unit, self.interval = max(total, 1), desc, unit, interval
        self.done, self.start, self.last = 0, time.time(), 0.0

    def update(self, n: int = 1):
        self.done += n
        now = time.time()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.desc}: {self.done}/{self.total} ({100.0 * self.done / self.total:.0f}%) "
                  f"{rate:.1f} {self.unit}/s ETA {eta:.0f}s", file=sys.stderr, flush=True)
