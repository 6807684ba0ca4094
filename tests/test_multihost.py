"""Two processes on localhost (jax.distributed, CPU backend, gloo collectives) train like one.

Each process has one CPU device and reads its half of every global batch; the gradients are
averaged across the processes. The run is killed after a checkpoint, resumed, and must end
with the parameters of a single process on the same global batch.
"""

import os
import signal
import socket
import time

from test_train import assert_trees_close, final_params, run_main

COMMON = ["--config=configs/mvdm.py:smoke", "--config.model.sm_pdrop=0.0",
          "--config.training.batch_size_train=8", "--config.training.batch_size_eval=8",
          "--config.training.num_steps_train=5", "--config.training.steps_per_save=1",
          "--config.training.steps_per_eval=1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two(workdir: str):
    port = _free_port()
    return [run_main(COMMON + [f"--workdir={workdir}", "--distributed",
                               f"--coordinator_address=localhost:{port}", "--num_processes=2",
                               f"--process_id={i}"], wait=False) for i in range(2)]


def test_two_processes_killed_and_resumed_equal_one_process(tmp_path):
    single = str(tmp_path / "single")
    result = run_main(COMMON + [f"--workdir={single}"])
    assert result.returncode == 0, result.stderr

    multi = str(tmp_path / "multi")
    procs = _start_two(multi)
    deadline = time.time() + 300
    while not os.path.isdir(os.path.join(multi, "checkpoints", "2")):
        assert all(p.poll() is None for p in procs) and time.time() < deadline, [
            p.stdout.read() for p in procs if p.poll() is not None]
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not os.path.isdir(os.path.join(multi, "checkpoints", "5"))

    procs = _start_two(multi)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "Resumed from step " in outputs[0] and "step 5/5" in outputs[0], outputs[0]
    assert "step 5/5" not in outputs[1]  # only process 0 prints
    assert_trees_close(final_params(single), final_params(multi), rtol=1e-4, atol=1e-6)
