"""A run's CPU time carries over a resume, from the metrics it logged up to its checkpoint."""

import json

from vdm_vae.training.loop import cpu_seconds_before


def test_cpu_seconds_resume_from_the_checkpoint_step(tmp_path):
    rows = [{"step": 50, "train/cpu_seconds": 100.0}, {"step": 100, "train/cpu_seconds": 190.0},
            {"step": 100, "eval/bpd": 2.0}, {"step": 150, "train/cpu_seconds": 290.0}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write('{"step": 160, "train/cpu')  # killed mid-line
    assert cpu_seconds_before(str(tmp_path), 100) == 190.0  # logged after step 100 is not counted
    assert cpu_seconds_before(str(tmp_path), 150) == 290.0
    assert cpu_seconds_before(str(tmp_path), 0) == 0.0
    assert cpu_seconds_before(str(tmp_path / "new"), 100) == 0.0
