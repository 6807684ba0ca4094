"""Default logs: third-party INFO, Orbax's save-wait warning and its threads' error tracebacks
off; --verbosity brings them."""

import logging

import pytest
from absl import logging as absl_logging

from vdm_vae.runtime import console


@pytest.fixture()
def absl_records():
    saved = {name: logging.getLogger(name).level for name in console.THIRD_PARTY}
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("absl")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.removeFilter(console._drop_orbax_noise)  # noqa: SLF001 - undo quiet_third_party
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_default_verbosity_drops_info_and_save_waits(absl_records):
    console.quiet_third_party(-1)
    absl_logging.info("Saving checkpoint at step %d", 1)
    absl_logging.warning("Waiting for previous save to complete took %f seconds.", 1.5)
    absl_logging.warning("a real warning")
    assert [r.getMessage() for r in absl_records] == ["a real warning"]


def test_verbosity_zero_keeps_everything(absl_records):
    console.quiet_third_party(0)
    absl_logging.info("Saving checkpoint at step %d", 1)
    absl_logging.warning("Waiting for previous save to complete took %f seconds.", 1.5)
    assert len(absl_records) == 2


def _orbax_error(message: str) -> logging.LogRecord:
    """A record as Orbax's save thread logs it (absl's logger, Orbax's file)."""
    return logging.LogRecord("absl", logging.ERROR, "/site-packages/orbax/checkpoint/future.py",
                             387, message, None, None)


def test_default_verbosity_drops_orbax_thread_tracebacks_only(absl_records):
    console.quiet_third_party(-1)
    logger = logging.getLogger("absl")
    logger.handle(_orbax_error("_SignalingThread.run() raised an exception"))
    absl_logging.error("an error of the project's own")
    assert [r.getMessage() for r in absl_records] == ["an error of the project's own"]
    console.quiet_third_party(0)
    logger.handle(_orbax_error("_SignalingThread.run() raised an exception"))
    assert len(absl_records) == 2
