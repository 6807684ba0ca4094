"""The ETA comes from the steady step rate: compilation, evaluation and saving excluded."""

from vdm_vae.runtime import progress
from vdm_vae.training.writers import format_progress


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


def test_progress_rate_and_eta_from_the_count_done(monkeypatch, capsys):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "time", clock)
    bar = progress.Progress(100, "sampling", "img", interval=0.0)
    clock.now += 10.0
    bar.set(0)  # nothing done yet (e.g. every chunk so far held by other workers)
    clock.now += 10.0
    bar.set(40)
    bar.update(10)
    assert capsys.readouterr().err.splitlines() == [
        "sampling: 0/100 (0%) 0.0 img/s ETA --",
        "sampling: 40/100 (40%) 2.0 img/s ETA 30s",
        "sampling: 50/100 (50%) 2.5 img/s ETA 20s",
    ]
