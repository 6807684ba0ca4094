"""Default logs: third-party INFO and Orbax's save-wait warning off; --verbosity brings them."""

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
    logger.removeFilter(console._drop_save_waits)  # noqa: SLF001 - undo quiet_third_party
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
