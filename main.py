"""Trains or evaluates a vdm_vae model.

  python main.py --config=configs/svdm_oe.py --workdir=runs/svdm_oe
  python main.py --config=configs/svdm_oe.py --workdir=runs/svdm_oe --mode=eval
  python main.py --config=configs/svdm_oe.py:smoke --workdir=/tmp/smoke
Any config field can be overridden: --config.training.num_steps_train=1000.
Exit codes: 0 finished (or saved at training.stop_at_step), 2 a user error (one line on
stderr; another process writing the workdir is one), 130 / 143 stopped by SIGINT / SIGTERM
(training after saving a checkpoint; an evaluation leaving the previous eval/ as it was).
--verbosity=0 shows third-party INFO logs.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vdm_vae.runtime import cli, distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (e.g. configs/svdm_oe.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and figures.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-host; settings come from "
    "the environment or the flags below).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", distributed.DEFAULT_TIMEOUT,
    "Seconds to wait for the coordinator and every process to connect before giving up "
    "(one line, exit code 2).")
_FINISH_AT_CHECKPOINT = flags.DEFINE_bool(
    "finish_at_checkpoint", False, "Training: a run whose newest checkpoint is past "
    "training.num_steps_train is evaluated and finished at that step instead of refused.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "--mode=eval: evaluate even if the config or the data differ "
    "from the run's config.json (the differences are recorded in eval/metrics.json).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}: every option is a --flag.")
    cli.quiet_logs()
    cli.check_workdir(_WORKDIR.value, must_exist=_MODE.value == "eval")
    import jax

    if _DISTRIBUTED.value:
        cli.run_or_exit(lambda: distributed.initialize(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
            _DISTRIBUTED_TIMEOUT.value))
    logging.info("JAX devices: %s", jax.devices())
    from vdm_vae.runtime.signals import Stopped

    try:
        if _MODE.value == "train":
            from vdm_vae.training.loop import train_and_evaluate

            cli.run_or_exit(lambda: train_and_evaluate(
                _CONFIG.value, _WORKDIR.value, finish_at_checkpoint=_FINISH_AT_CHECKPOINT.value))
        else:
            from vdm_vae.evaluation.evaluate import evaluate

            cli.run_or_exit(lambda: evaluate(_CONFIG.value, _WORKDIR.value,
                                             allow_config_change=_ALLOW_CONFIG_CHANGE.value))
    except Stopped as stopped:
        if _MODE.value == "train":  # all saved and closed: a normal exit (multi-host shutdown)
            sys.exit(stopped.exit_code)
        cli.exit_now(stopped.exit_code)  # an evaluation may stop inside a restore's threads


if __name__ == "__main__":
    from vdm_vae.cpu.env import reexec_with_cpu_settings

    reexec_with_cpu_settings()  # huge pages for malloc, multi-threaded convs: see cpu_env.py
    app.run(main, flags_parser=cli.parse_flags)
