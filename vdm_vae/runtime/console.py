"""The project's own console lines (stdout, process 0) and quiet third-party logging."""

import contextlib
import logging
import os
import sys

# Loggers of libraries that report every save, restore and compile at INFO level.
THIRD_PARTY = ("absl", "orbax", "jax", "tensorstore", "matplotlib", "PIL", "clu")


def _is_main_process() -> bool:
    if "jax" not in sys.modules:
        return True
    import jax

    return jax.process_index() == 0


def say(message: str):
    """Prints one of the project's lines (progress, resume, saves) on process 0's stdout."""
    if _is_main_process():
        print(message, flush=True)


def warn(message: str):
    """Prints `warning: message` on process 0's stdout."""
    say(f"warning: {message}")


def quiet_third_party(verbosity: int):
    """Hides third-party INFO lines unless absl's --verbosity is 0 (INFO) or more.

    Args:
      verbosity: absl's verbosity: -1 (default here) shows WARNING and above, 0 INFO, 1 DEBUG.
    """
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(level)
    absl_logger = logging.getLogger("absl")
    absl_logger.removeFilter(_drop_orbax_noise)
    if verbosity < 0:
        absl_logger.addFilter(_drop_orbax_noise)


def _drop_orbax_noise(record: logging.LogRecord) -> bool:
    """False for Orbax's "Waiting for previous save to complete took N seconds" warning and for
    the tracebacks Orbax's threads log when a save or restore fails.

    Checkpointer.save already waits for every save; on a loaded machine Orbax still warns
    about the second it takes to start the next one, at every save. A failed save or restore
    reaches the project's code as an exception, which says it in one line (`SaveFailed`, the
    unreadable-checkpoint warning); Orbax's threads first log it, with tracebacks, several times.
    """
    if str(record.msg).startswith("Waiting for previous save to complete"):
        return False
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


@contextlib.contextmanager
def quiet_native_stderr():
    """Sends file descriptor 2 to /dev/null inside the block unless INFO logs are on.

    TensorFlow's C++ start-up lines (oneDNN, absl::InitializeLog) ignore TF_CPP_MIN_LOG_LEVEL;
    Python exceptions raised inside the block still show, after it.
    """
    if logging.getLogger("absl").getEffectiveLevel() <= logging.INFO:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
