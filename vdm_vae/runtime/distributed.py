"""`main.py --distributed`: jax.distributed.initialize with its flags checked, progress on stdout
and a deadline of its own.

Left to itself, a process whose peers never come waits initialization_timeout (300 s) in
silence, then JAX aborts it (SIGABRT) with a message that blames another task. Here each process
says what it waits for, and after --distributed_timeout seconds prints one line and exits 2.
"""

import sys
import threading
from typing import Optional

from vdm_vae.runtime import cli

DEFAULT_TIMEOUT = 300  # seconds, JAX's own initialization_timeout
# JAX's deadline is this much later than ours, so that ours (one line, exit 2) always comes first.
_JAX_GRACE = 60


def check_args(address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int], timeout: int):
    """Raises ValueError, naming the flag, for an address without a port, a process count
    below 1, a process id outside [0, num_processes) or a timeout below 1 s."""
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator_address={address!r} is invalid: expected host:port "
                             "of process 0, e.g. 10.0.0.1:1234 or localhost:1234.")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes={num_processes} is invalid: expected a positive int.")
    if process_id is not None:
        if num_processes is not None and not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} is invalid: expected 0 to "
                             f"{num_processes - 1} (--num_processes={num_processes}).")
        if process_id < 0:
            raise ValueError(f"--process_id={process_id} is invalid: expected an int >= 0.")
    if timeout < 1:
        raise ValueError(f"--distributed_timeout={timeout} is invalid: expected seconds >= 1.")


def initialize(address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int], timeout: int = DEFAULT_TIMEOUT):
    """Connects this process to the others (flags as `check_args`), saying so on stdout; one
    line on stderr and exit code 2 if they are not all connected after `timeout` seconds."""
    check_args(address, num_processes, process_id, timeout)
    import jax

    who = f"process {process_id} of {num_processes}" if process_id is not None else "process"
    where = f"the coordinator at {address}" if address else "the coordinator of the environment"
    role = "starting" if process_id == 0 else "connecting to"
    print(f"distributed: {who}: {role} {where}; waiting up to {timeout} s for every process "
          "(--distributed_timeout).", flush=True)
    deadline = threading.Timer(timeout, _give_up, args=(where, num_processes, timeout))
    deadline.daemon = True
    deadline.start()
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                                   process_id=process_id,
                                   initialization_timeout=timeout + _JAX_GRACE)
    except Exception as error:  # noqa: BLE001 - JAX's errors carry multi-line details
        deadline.cancel()
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        raise ValueError(f"--distributed: jax.distributed.initialize failed "
                         f"({type(error).__name__}: {first}).") from error
    deadline.cancel()
    print(f"distributed: connected as process {jax.process_index()} of {jax.process_count()}; "
          f"{jax.device_count()} devices in all, {jax.local_device_count()} here.", flush=True)


def _give_up(where: str, num_processes: Optional[int], timeout: int):
    count = f"all {num_processes} processes" if num_processes else "every process"
    ids = f" (--process_id=0..{num_processes - 1})" if num_processes else ""
    print(f"error: --distributed: {count} did not connect through {where} within {timeout} s "
          f"(--distributed_timeout): start every process{ids} with the same "
          "--coordinator_address and --num_processes, and check that process 0's address is "
          "reachable.", file=sys.stderr, flush=True)
    cli.exit_now(cli.USAGE_ERROR)
