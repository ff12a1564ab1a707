"""The command line: parse options, call one function, map domain errors to exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from proctrace_bcc import __version__
from proctrace_bcc.errors import ProctraceError

app = typer.Typer(
    name="proctrace-bcc",
    help="Record process lifecycle events (fork, exec, exit, setpgid, setsid) with eBPF, "
    "and analyze recordings anywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"proctrace-bcc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],  # noqa: UP045 - typer needs Optional here
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    pass


def fail(exc: ProctraceError) -> typer.Exit:
    """Print a domain error as one line on stderr; the caller raises the returned Exit."""
    sys.stderr.write(f"proctrace-bcc: error: {exc}\n")
    return typer.Exit(exc.exit_code)


MODES_HELP = "sequential, by-process, mermaid, tree, html, chrome-trace, fds"


def _analyze(input: str, output: Optional[Path], display: str, root_pid: Optional[int]) -> None:  # noqa: UP045
    from proctrace_bcc.analyze import analyze

    try:
        analyze(input, output, display, root_pid)
    except ProctraceError as exc:
        raise fail(exc) from None


InputOpt = Annotated[str, typer.Option("-i", "--input", help="Recording to read ('-' for stdin).")]
OutputOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("-o", "--output", help="Write here instead of stdout."),
]
DisplayOpt = Annotated[str, typer.Option("-d", "--display", help=f"Output mode: {MODES_HELP}.")]
RootOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("-p", "--root-pid", help="Only the subtree of this pid."),
]


@app.command()
def analyze(
    input: InputOpt = "-",
    output: OutputOpt = None,
    display: DisplayOpt = "tree",
    root_pid: RootOpt = None,
) -> None:
    """Turn a recording into readable output (needs neither root nor BCC)."""
    _analyze(input, output, display, root_pid)


# `render`: the original proctrace's name for the same command.
app.command("render", hidden=True, help="Alias of `analyze`, for users of the original proctrace.")(
    analyze
)


@app.command()
def ingest(
    input: InputOpt = "-",
    root_pid: Annotated[
        int, typer.Option("-p", "--root-pid", help="Root of the subtree to keep.")
    ] = 0,
    output: OutputOpt = None,
) -> None:
    """Cut the subtree of one process out of a raw (system-wide) recording."""
    from proctrace_bcc.ingest import ingest as do_ingest

    if not root_pid:
        raise fail(ProctraceError("ingest needs -p/--root-pid"))
    try:
        do_ingest(input, root_pid, output)
    except ProctraceError as exc:
        raise fail(exc) from None


@app.command(context_settings={"allow_interspersed_args": False})
def record(
    command: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Command to run and trace."),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Recording file.")] = Path(
        "proctrace.ndjson"
    ),
    backend: Annotated[str, typer.Option("--backend", help="auto, bcc or bpftrace.")] = "auto",
    raw: Annotated[bool, typer.Option("--raw", help="Keep every event on the machine.")] = False,
    timeout: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--timeout", help="Stop recording after SECS seconds."),
    ] = None,
    grace: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--grace", help="Once CMD exits, wait at most SECS for its descendants."),
    ] = None,
    kill_leftovers: Annotated[
        bool,
        typer.Option("--kill-leftovers",
                     help="When recording stops (timeout, grace, Ctrl-C), end what still runs "
                     "of the tree (SIGTERM, then SIGKILL after 2 s)."),
    ] = False,
    as_root: Annotated[
        bool, typer.Option("--as-root", help="Under sudo, run CMD as root.")
    ] = False,
    fds: Annotated[
        bool, typer.Option("--fds/--no-fds", help="Record open descriptors at each exec.")
    ] = False,
    buffer_pages: Annotated[
        int, typer.Option("--buffer-pages", help="Perf buffer pages per CPU (power of two).")
    ] = 256,
    argv_max: Annotated[
        int,
        typer.Option("--argv-max", help="Bytes of argv kept per exec, at most 49152 (BCC)."),
    ] = 49152,
    bpftrace_path: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("-b", "--bpftrace-path", help="bpftrace binary to use."),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No live status line.")] = False,
    print_bpf: Annotated[bool, typer.Option("--print-bpf", hidden=True)] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="BCC: compile the BPF program even if the cache "
                           "holds it (and store the new one).")
    ] = False,
) -> None:
    """Run CMD (or, without CMD, watch the whole machine) and record its process tree."""
    from proctrace_bcc.record import RecordOptions, run_record

    opts = RecordOptions(
        command=list(command or []), output=output, backend=backend, raw=raw, timeout=timeout,
        grace=grace, as_root=as_root, fds=fds, buffer_pages=buffer_pages, argv_max=argv_max,
        bpftrace_path=bpftrace_path, quiet=quiet, print_bpf=print_bpf,
        kill_leftovers=kill_leftovers, cache=not no_cache,
    )
    try:
        code = run_record(opts)
    except ProctraceError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@app.command()
def doctor() -> None:
    """Check what recording needs on this machine and which backend `auto` picks."""
    from proctrace_bcc.doctor import run_doctor

    raise typer.Exit(run_doctor())


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


def main() -> None:
    _std_fds()
    try:
        app()
    except ProctraceError as exc:  # last resort: commands normally map their own errors
        sys.stderr.write(f"proctrace-bcc: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["Path", "app", "fail", "main"]
