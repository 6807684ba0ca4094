"""The ETA comes from the steady step rate: compilation, evaluation and saving excluded."""

from vdm_vae import progress
from vdm_vae.writers import format_progress


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_step_timer_excludes_first_step_and_pauses(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "time", clock)
    timer = progress.StepTimer()
    assert timer.steps_per_sec(1) is None  # nothing timed yet
    clock.now += 30.0  # step 1 compiles
    timer.start(1)
    assert timer.steps_per_sec(1) is None
    clock.now += 2.0  # steps 2..5 at 0.5 s each
    assert timer.steps_per_sec(5) == 2.0
    clock.now += 60.0  # evaluation and saving
    timer.restart(5)
    clock.now += 1.0  # steps 6..7
    assert timer.steps_per_sec(7) == 2.0


def test_progress_line_eta_from_rate_or_unknown():
    scalars = {"objective": 1.0, "bpd": 1.0, "kl_w_nats": 0.5}
    line = format_progress(100, 7300, scalars, 2.0, 64)
    assert line.endswith("2.00 steps/s  128.0 img/s  ETA 1h00m00s"), line
    assert format_progress(1, 100, scalars, None, 64).endswith("-- steps/s  ETA --")
