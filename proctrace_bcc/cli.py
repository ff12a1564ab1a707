"""The entry point: `record` read by its plain parser (record_options.parse) and run
without importing typer; everything else, and any `record` command line that parser
leaves to typer (--help, errors), by the typer app (commands.py)."""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import sys
from typing import Any, NoReturn

from proctrace_bcc import record_options
from proctrace_bcc.errors import ProctraceError


def report(exc: ProctraceError) -> int:
    """Print a domain error as one line on stderr: its exit code."""
    sys.stderr.write(f"proctrace-bcc: error: {exc}\n")
    return exc.exit_code


def record(values: dict[str, Any]) -> int:
    """`record` with its parameters (either parser's): its exit status."""
    from proctrace_bcc.record import run_record

    opts = record_options.to_options(values)
    try:
        return run_record(opts)
    except ProctraceError as exc:
        return report(exc)


def _std_fds() -> None:
    """A closed stdin, stdout or stderr (`2>&-`) becomes /dev/null, for us (Python would
    have None for sys.stderr) and for CMD, and no file we open takes its number."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def _plain_record(values: dict[str, Any]) -> int:
    """`record` as the typer app runs it (its ends: Ctrl-C 130, EOF and EPIPE 1)."""
    try:
        return record(values)
    except KeyboardInterrupt:
        return 130
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        return 1
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        return 1


def _exit(code: int) -> NoReturn:
    """Exit now: the atexit handlers and the flush of stdout and stderr, without the
    interpreter's teardown of every module (tens of ms that the shell would wait for;
    the recording is closed and fsynced already)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main() -> None:
    _std_fds()
    args = sys.argv[1:]
    values = record_options.parse(args[1:]) if args[:1] == ["record"] else None
    if values is not None:
        _exit(_plain_record(values))
    from proctrace_bcc.commands import app

    try:
        app(prog_name="proctrace-bcc")
    except ProctraceError as exc:  # last resort: commands normally map their own errors
        sys.exit(report(exc))
    except KeyboardInterrupt:
        sys.exit(130)
