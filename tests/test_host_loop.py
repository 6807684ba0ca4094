"""benchmarks/host_loop.py: main.py's loop around a train step that does no work."""

import json

from conftest import load_experiment


def test_the_loop_runs_idle_steps_and_finds_each_save_and_evaluation(tmp_path):
    host_loop = load_experiment("host_loop", "benchmarks")
    out = tmp_path / "host_loop.json"
    host_loop.main(["--config=configs/mvdm_oe.py:smoke", "--steps=12", "--steps-per-save=4",
                    "--steps-per-eval=6", "--steps-per-logging=2", "--substeps=2",
                    "--step-rates=10,100", "--out", str(out)])
    result = json.loads(out.read_text())
    # Saves at 4 and 8 and the evaluation at 6 (12 is the last step: no call after it shows
    # its cost); the idle step advances the state's step as the real one does.
    assert [step for step, _ in result["saves"]] == [4, 8]
    assert [step for step, _ in result["evals"]] == [6]
    assert result["evals"][0][1] > 0  # an evaluation that compiles takes longer than a step
    assert result["ceiling_steps_per_s"] > 0 and result["host_ms_per_step"] > 0
    assert result["substeps"] == 2 and result["batch"] == 8
    table = host_loop.markdown(result)
    assert "| evaluation (compiles) | 6 |" in table and "steps at 100/s" in table
    from vdm_vae.training import loop, step

    assert loop.make_train_step is step.make_train_step  # the real step is back
