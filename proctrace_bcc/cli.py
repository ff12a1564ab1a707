"""The command line: parse options, call one function, map domain errors to exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from proctrace_bcc import __version__
from proctrace_bcc.errors import ProctraceError, UsageError
from proctrace_bcc.render.registry import MODES

app = typer.Typer(
    name="proctrace-bcc",
    help="Record process lifecycle events (fork, exec, exit, setpgid, setsid) with eBPF, "
    "and analyze recordings anywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: a flag shows no value type, metavars are ours
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


DEFAULT_RECORDING = "proctrace.ndjson"  # what `record` writes without -o


def default_input(given: str | None) -> str:
    """-i as given; without it, stdin unless stdin is a terminal: then record's default
    output when it exists (said on stderr), else a UsageError saying what to pass."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return "-"
    if Path(DEFAULT_RECORDING).is_file():
        sys.stderr.write(f"proctrace-bcc: reading ./{DEFAULT_RECORDING} (record's default "
                         "output; -i PATH for another, -i - for stdin)\n")
        return DEFAULT_RECORDING
    raise UsageError(f"no recording: pass -i PATH (record writes ./{DEFAULT_RECORDING} by "
                     "default, and there is none here) or pipe one to stdin")


def _analyze(input: str | None, output: Optional[Path], display: str,  # noqa: UP045
             root_pid: Optional[int], wide: bool, full: bool,  # noqa: UP045
             test: Optional[str] = None) -> None:  # noqa: UP045
    from proctrace_bcc.analyze import analyze

    try:
        analyze(default_input(input), output, display, root_pid, wide, full, test)
    except ProctraceError as exc:
        raise fail(exc) from None


InputOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("-i", "--input", metavar="PATH|-", show_default=False,
                 help="Recording to read, `-` for stdin [default: stdin; on a terminal "
                 f"./{DEFAULT_RECORDING}, `record`'s default output]."),
]
OutputOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("-o", "--output", metavar="PATH", help="Write here instead of stdout."),
]
DisplayOpt = Annotated[str, typer.Option(
    "-d", "--display", metavar="MODE",
    help=f"Output mode: {', '.join(MODES)}; see docs/analyze.md.")]
RootOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("-p", "--root-pid", metavar="ROOT_PID",
                 help="Only the subtree of this process (its title and duration too)."),
]


@app.command()
def analyze(
    input: InputOpt = None,
    output: OutputOpt = None,
    display: DisplayOpt = "tree",
    root_pid: RootOpt = None,
    wide: Annotated[bool, typer.Option(
        "--wide", help="On a terminal, keep tree lines whole (they are cut to its width).")
    ] = False,
    full: Annotated[bool, typer.Option(
        "--all", help="fds: list every pipe and socket and every holder (by default the "
        "first ones, then a count).")
    ] = False,
    test: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--test", metavar="NAME", show_default=False,
        help="Only the processes of this test (its name, or a part of it; see -d tests) "
        "and their descendants, in every mode.")
    ] = None,
) -> None:
    """Turn a recording into readable output (needs neither root nor BCC)."""
    _analyze(input, output, display, root_pid, wide, full, test)


# `render`: the original proctrace's name for the same command.
app.command("render", hidden=True, help="Alias of `analyze`, for users of the original proctrace.")(
    analyze
)


@app.command()
def ingest(
    input: InputOpt = None,
    root_pid: Annotated[
        int, typer.Option("-p", "--root-pid", metavar="PID", show_default=False,
                          help="Root of the subtree to keep (required).")
    ] = 0,
    output: OutputOpt = None,
) -> None:
    """Cut the subtree of one process out of a raw (system-wide) recording."""
    from proctrace_bcc.ingest import ingest as do_ingest

    if not root_pid:
        raise fail(ProctraceError("ingest needs -p/--root-pid"))
    try:
        do_ingest(default_input(input), root_pid, output)
    except ProctraceError as exc:
        raise fail(exc) from None


@app.command(context_settings={"allow_interspersed_args": False})
def record(
    command: Annotated[
        Optional[list[str]],  # noqa: UP045
        # shown in the usage line and the docstring (an Arguments section would
        # print its Python type)
        typer.Argument(metavar="-- CMD ARGS", hidden=True),
    ] = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", metavar="PATH", help="Recording file.")
    ] = Path(DEFAULT_RECORDING),
    backend: Annotated[str, typer.Option(
        "--backend", metavar="auto|bcc|bpftrace",
        help="Backend: auto picks BCC, else bpftrace (see doctor).")] = "auto",
    raw: Annotated[bool, typer.Option(
        "--raw", help="With CMD: keep every event of the machine (the header notes CMD's "
        "pid; see ingest).")] = False,
    timeout: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--timeout", metavar="SECS",
                     help="Stop recording after SECS seconds (CMD gets SIGTERM; exit 124)."),
    ] = None,
    grace: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--grace", metavar="SECS",
                     help="Once CMD exits, wait at most SECS for its descendants."),
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
    env: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--env", metavar="NAME",
                     help="Record this environment variable's value at each exec (repeatable; "
                     "`--env tests`: the test runners' variables, for `analyze -d tests`; "
                     "none by default)."),
    ] = None,
    buffer_pages: Annotated[
        int, typer.Option("--buffer-pages", metavar="PAGES",
                          help="Perf buffer pages per CPU (power of two).")
    ] = 256,
    argv_max: Annotated[
        int,
        typer.Option("--argv-max", metavar="BYTES",
                     help="Bytes of argv kept per exec, at most 49152 (BCC)."),
    ] = 49152,
    bpftrace_path: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("-b", "--bpftrace-path", metavar="PATH", help="bpftrace binary to use."),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No live status line.")] = False,
    print_bpf: Annotated[bool, typer.Option("--print-bpf", hidden=True)] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="BCC: compile the BPF program even if the cache "
                           "holds it (and store the new one).")
    ] = False,
) -> None:
    """Run CMD (or, without CMD, watch the whole machine) and record its process tree.

    CMD runs as the user behind sudo (unless --as-root) and keeps the terminal;
    `record` exits with CMD's status (127/126 when CMD cannot be found or run).
    """
    from proctrace_bcc.record import RecordOptions, run_record

    opts = RecordOptions(
        command=list(command or []), output=output, backend=backend, raw=raw, timeout=timeout,
        grace=grace, as_root=as_root, fds=fds, buffer_pages=buffer_pages, argv_max=argv_max,
        bpftrace_path=bpftrace_path, quiet=quiet, print_bpf=print_bpf,
        kill_leftovers=kill_leftovers, env=env, cache=not no_cache,
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
        app(prog_name="proctrace-bcc")
    except ProctraceError as exc:  # last resort: commands normally map their own errors
        sys.stderr.write(f"proctrace-bcc: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["Path", "app", "fail", "main"]
