"""What the commands share: flag parsing, quiet logs, user errors as one line with exit code 2.

  app.run(main, flags_parser=cli.parse_flags)   # bad flags / config files: one line, exit 2
  cli.run_or_exit(lambda: train_and_evaluate(config, workdir))   # user errors: one line, exit 2

A command that fails ends at once (`exit_now`): threads a library left running (Orbax's
checkpoint writers, TensorStore's reads) can neither keep the process alive nor print their
tracebacks after the one line.
"""

import difflib
import errno
import importlib.util
import os
import sys
import traceback
from typing import Callable, List, Optional

from absl import flags, logging

from vdm_vae.runtime.console import quiet_third_party
from vdm_vae.runtime.signals import Stopped

USAGE_ERROR = 2
# Errors the library raises for what the user asked (a field, a file, a value); anything
# else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError,
               FloatingPointError)
# OS errors that come from the machine or the user's files, not from a bug: one line too.
USER_OS_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                  errno.ENOTDIR, errno.EISDIR)


def exit_now(code: int):
    """Flushes stdout and stderr and ends the process with `code`, without waiting for other
    threads (a failed save leaves Orbax's waiting for minutes) or running their cleanup."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(message: str):
    """Prints `error: message` (one line) on stderr and exits with code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    exit_now(USAGE_ERROR)


def _config_fields(flag_name: str, argv: List[str]) -> List[str]:
    """Dotted names `config.a.b` of every field of the config file that argv gives."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag_name}=")]
    if not given:
        return []
    path, _, arg = given[-1].partition(":")
    try:  # the failed parse left the flag unset: load the file again, without overrides
        spec = importlib.util.spec_from_file_location("_config_for_hint", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tree = (module.get_config(arg) if arg else module.get_config()).to_dict()
    except Exception:  # noqa: BLE001 - the config file itself does not load
        return []
    names, stack = [], [(flag_name, tree)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                stack.append((f"{prefix}.{key}", value))
            else:
                names.append(f"{prefix}.{key}")
    return sorted(names)


def _unknown_flag_message(name: str, argv: List[str]) -> str:
    """`--name` is unknown: the nearest valid names (config fields or flags)."""
    prefix = name.split(".", 1)[0]
    if "." in name and prefix in flags.FLAGS:
        candidates = _config_fields(prefix, argv)
        near = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        if not near:
            parent = name.rsplit(".", 1)[0] + "."
            near = [c for c in candidates if c.startswith(parent)][:12]
        parts = name.split(".")
        known = next(i for i in range(len(parts) - 1, 0, -1)
                     if any(c.startswith(".".join(parts[:i]) + ".") for c in candidates)
                     or i == 1)
        what = f"{'.'.join(parts[:known])} has no field {parts[known]!r}"
    else:
        near = difflib.get_close_matches(name, list(flags.FLAGS), n=3, cutoff=0.6)
        what = f"--{name} is not a flag"
    hint = f"; valid names nearby: {', '.join('--' + n for n in near)}" if near else ""
    return f"{what}{hint}."


def _misspelled_field(argv: List[str]) -> Optional[str]:
    """The first `--config.a.b=...` of argv that names no field of its config, if any."""
    for arg in argv[1:]:
        name = arg.lstrip("-").split("=", 1)[0]
        prefix = name.split(".", 1)[0]
        if "." in name and prefix in flags.FLAGS and name not in _config_fields(prefix, argv):
            return name
    return None


def _flag_error_message(error: Exception, argv: List[str]) -> str:
    text = str(error)
    if isinstance(error, flags.UnrecognizedFlagError):
        return _unknown_flag_message(error.flagname, argv)
    if isinstance(error, (KeyError, AttributeError)) and _misspelled_field(argv):
        return _unknown_flag_message(_misspelled_field(argv), argv)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(error, OSError):
        missing = [line for line in lines if "No such file" in line or "Errno" in line]
        return f"cannot load the config file: {(missing or lines)[-1]}"
    if "Traceback" in text:  # a config file that raised: keep its first and last line
        return f"{lines[0]} {lines[-1]}"
    return lines[0] if lines else type(error).__name__


def parse_flags(argv: List[str]) -> List[str]:
    """absl flags_parser: a bad flag or config file is one line on stderr and exit code 2.

    """
    try:
        remaining = flags.FLAGS(argv)
        for name in flags.FLAGS:
            value = flags.FLAGS[name].value
            if type(value).__name__ == "_ErrorConfig":  # a config file that failed to load
                value.to_dict()  # raises its OSError
    except (flags.Error, OSError, ValueError, KeyError, AttributeError) as error:
        fail(_flag_error_message(error, argv))
    return remaining


def quiet_logs():
    """Call at the start of main: third-party INFO stays off unless --verbosity was given."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    quiet_third_party(logging.get_verbosity())


def check_workdir(workdir: str, must_exist: bool = False):
    """Fails with one line if `workdir` is a file (or, with must_exist, missing)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        fail(f"--workdir={workdir!r} is a file: expected a folder (new or of an earlier run).")
    if must_exist and not os.path.isdir(workdir):
        fail(f"--workdir={workdir!r} does not exist: expected the folder of a trained run.")


def run_or_exit(job: Callable[[], Optional[int]]) -> Optional[int]:
    """Runs `job`; a user error (see USER_ERRORS, USER_OS_ERRNOS) becomes one line on stderr and
    exit code 2, SIGINT one line on stdout and exit code 130, anything else (a bug) its
    traceback and exit code 1. `Stopped` (a command that stopped on a signal, having said so)
    passes, for the caller to exit with its code."""
    try:
        return job()
    except Stopped:
        raise
    except USER_ERRORS as error:
        fail(str(error))
    except OSError as error:
        if error.errno not in USER_OS_ERRNOS:
            traceback.print_exc()
            exit_now(1)
        fail(f"{error.strerror}: {error.filename}" if error.filename else str(error))
    except KeyboardInterrupt:
        print("Signal 2: stopped.", flush=True)
        exit_now(130)
    except Exception:  # noqa: BLE001 - a bug: its traceback, then end without waiting
        traceback.print_exc()
        exit_now(1)
