"""Metric writers: CLU (TensorBoard) when TensorFlow is installed, always JSONL + PNG + console."""

import json
import os
import time
from typing import Dict, List, Mapping, Optional

import numpy as np

from vdm_vae.runtime import atomic
from vdm_vae.runtime.console import quiet_native_stderr
from vdm_vae.runtime.images import save_png


def read_metrics(workdir: str) -> List[dict]:
    """The rows of workdir/metrics.jsonl ([] if none), skipping a line cut short by a kill."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def drop_rows_after(workdir: str, step: int) -> int:
    """Rewrites workdir/metrics.jsonl without its rows after `step` (written after the
    checkpoint a run resumes from, they would be written again); returns how many it dropped."""
    path = os.path.join(workdir, "metrics.jsonl")
    rows = read_metrics(workdir)
    kept = [row for row in rows if row.get("step", 0) <= step]
    if len(kept) == len(rows):
        return 0
    atomic.write_text(path, "".join(json.dumps(row) + "\n" for row in kept))
    return len(rows) - len(kept)


class JsonlWriter:
    """Appends {"step", "time", name: value} lines to workdir/metrics.jsonl; PNGs to images/."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(os.path.join(workdir, "images"), exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.file = open(self.path, "a")

    def write_scalars(self, step: int, scalars: Mapping[str, float]):
        row = {"step": int(step), "time": time.time()}
        row.update({k: float(v) for k, v in scalars.items()})
        self.file.write(json.dumps(row) + "\n")

    def write_images(self, step: int, images: Mapping[str, np.ndarray]):
        for name, image in images.items():
            path = os.path.join(self.workdir, "images", f"{name.replace('/', '_')}_{step:08d}.png")
            save_png(path, image)

    def write_hparams(self, hparams: Mapping):
        with open(os.path.join(self.workdir, "hparams.json"), "w") as f:
            json.dump(dict(hparams), f, indent=2, default=str)

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


class MultiWriter:
    """Sends every call to all writers."""

    def __init__(self, writers: List):
        self.writers = writers

    def __getattr__(self, name):
        def call(*args, **kwargs):
            for w in self.writers:
                getattr(w, name)(*args, **kwargs)
        return call


def _clu_writer(workdir: str):
    """CLU's TensorBoard writer, or None when TensorFlow (and so CLU's writers) is missing."""
    with quiet_native_stderr():  # TensorFlow's C++ start-up lines
        try:
            from clu import metric_writers
        except ImportError:
            return None
        return metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))


class _CluImages:
    """Adapts CLU's write_images to [H,W,C] grids (CLU wants a leading batch axis)."""

    def __init__(self, writer):
        self.writer = writer

    def write_scalars(self, step: int, scalars: Dict[str, float]):
        self.writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]):
        self.writer.write_images(step, {k: np.asarray(v)[None] for k, v in images.items()})

    def write_hparams(self, hparams: Mapping):
        self.writer.write_hparams({k: str(v) for k, v in hparams.items()})

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def create_writer(workdir: str, process_index: int = 0, tensorboard: bool = True):
    """Writer for `workdir`; non-zero processes write nothing.

    JSONL and PNG always; TensorBoard event files too when `tensorboard` and TensorFlow is
    installed.
    """
    if process_index != 0:
        return MultiWriter([])
    writers = [JsonlWriter(workdir)]
    clu = _clu_writer(workdir) if tensorboard else None
    if clu is not None:
        writers.append(_CluImages(clu))
    return MultiWriter(writers)


def format_progress(step: int, total: int, scalars: Mapping[str, float],
                    steps_per_sec: Optional[float], batch_size: int) -> str:
    """One progress line: step, objective, bpd, KL of w, throughput and ETA.

    Args:
      steps_per_sec: steady-state rate (compilation, evaluation and saving excluded), or
        None when no step has been timed yet (throughput and ETA then show "--").
    """
    line = (f"step {step}/{total} ({100.0 * step / total:.1f}%)  "
            f"objective {scalars.get('objective', float('nan')):.4f}  "
            f"bpd {scalars.get('bpd', float('nan')):.4f}  "
            f"kl_w {scalars.get('kl_w_nats', float('nan')):.3f} nats  ")
    if not steps_per_sec:
        return line + "-- steps/s  ETA --"
    eta = int((total - step) / steps_per_sec)
    hours, rem = divmod(eta, 3600)
    return line + (f"{steps_per_sec:.2f} steps/s  {steps_per_sec * batch_size:.1f} img/s  "
                   f"ETA {hours}h{rem // 60:02d}m{rem % 60:02d}s")
