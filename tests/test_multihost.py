"""Two processes on localhost (jax.distributed, CPU backend, gloo collectives) train like one.

Each process has one CPU device and reads its half of every global batch; the gradients are
averaged across the processes. SIGTERM to process 1 alone stops both at the same step after a
checkpoint (exit code 143); the run resumes and must end with the parameters of a single
process on the same global batch. `--distributed` with bad flags or a missing peer ends in one
line.
"""

import os
import signal
import socket
import time

import pytest
from test_train import assert_trees_close, final_params, run_main

# The learning rate does not decay (the smoke default), so num_steps_train changes nothing else.
COMMON = ["--config=configs/mvdm.py:smoke", "--config.model.sm_pdrop=0.0",
          "--config.training.batch_size_train=8", "--config.training.batch_size_eval=8",
          "--config.training.steps_per_save=1000", "--config.training.steps_per_eval=100000",
          "--config.optimizer.lr_decay=False"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two(workdir: str, steps: int):
    port = _free_port()
    return [run_main(COMMON + [f"--workdir={workdir}", f"--config.training.num_steps_train={steps}",
                               "--distributed", f"--coordinator_address=localhost:{port}",
                               "--num_processes=2", f"--process_id={i}"], wait=False)
            for i in range(2)]


def test_two_processes_stopped_and_resumed_equal_one_process(tmp_path):
    multi = str(tmp_path / "multi")
    procs = _start_two(multi, 100_000)
    for line in procs[0].stdout:
        if line.startswith("step 2/"):
            break
    procs[1].send_signal(signal.SIGTERM)  # one process only: both must stop at one step
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outputs
    stopped = int(outputs[0].split("Signal 15: saved step ")[1].split()[0])
    assert os.listdir(os.path.join(multi, "checkpoints")) == [str(stopped)]

    procs = _start_two(multi, stopped + 2)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert f"Resumed from step {stopped} in " in outputs[0], outputs[0]
    assert f"step {stopped + 2}/{stopped + 2}" in outputs[0], outputs[0]
    assert "step " not in outputs[1]  # only process 0 prints

    single = str(tmp_path / "single")
    result = run_main(COMMON + [f"--workdir={single}",
                                f"--config.training.num_steps_train={stopped + 2}"])
    assert result.returncode == 0, result.stderr
    assert_trees_close(final_params(single), final_params(multi), rtol=1e-4, atol=1e-6)


BAD_DISTRIBUTED = [
    (["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"],
     "--coordinator_address='localhost' is invalid: expected host:port of process 0"),
    (["--coordinator_address=localhost:1234", "--num_processes=2", "--process_id=5"],
     "--process_id=5 is invalid: expected 0 to 1 (--num_processes=2)."),
    (["--coordinator_address=localhost:1234", "--num_processes=0", "--process_id=0"],
     "--num_processes=0 is invalid"),
]


@pytest.mark.parametrize("flags,message", BAD_DISTRIBUTED)
def test_bad_distributed_flags_are_one_line_before_any_connection(flags, message, tmp_path):
    result = run_main(COMMON + [f"--workdir={tmp_path / 'run'}", "--distributed"] + flags,
                      timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert "distributed:" not in result.stdout  # refused before connecting


@pytest.mark.parametrize("process_id", [0, 1])
def test_a_peer_that_never_comes_is_one_line_after_the_timeout(process_id, tmp_path):
    """Process 0 alone (its peer never started), or process 1 with no coordinator listening:
    each says what it waits for, then gives up after --distributed_timeout in one line."""
    port = _free_port()
    start = time.time()
    result = run_main(COMMON + [f"--workdir={tmp_path / 'run'}", "--distributed",
                                f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                f"--process_id={process_id}", "--distributed_timeout=3"],
                      timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    role = "starting" if process_id == 0 else "connecting to"
    assert result.stdout.splitlines() == [
        f"distributed: process {process_id} of 2: {role} the coordinator at localhost:{port}; "
        "waiting up to 3 s for every process (--distributed_timeout)."]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --distributed: all 2 processes did not connect through the "
                           f"coordinator at localhost:{port} within 3 s (--distributed_timeout)")
    assert time.time() - start < 60
    assert not (tmp_path / "run").exists()
