"""The commands, by typer: options, --help, errors, each command calling one function.

`record`'s options come from record_options.RECORD (one table, also read by the
plain parser cli.main uses for `record`); cli.main is the entry point.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from proctrace_bcc import __version__, cli
from proctrace_bcc.errors import ProctraceError, UsageError
from proctrace_bcc.record_options import DEFAULT_RECORDING, RECORD, Opt
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
    return typer.Exit(cli.report(exc))


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



def _param(o: Opt) -> inspect.Parameter:
    """The typer parameter of one option of the table."""
    kind: Any = list[o.kind] if o.multiple else o.kind  # type: ignore[name-defined]
    annotation = Optional[kind] if o.optional else kind  # noqa: UP045 - typer needs Optional
    decls = [f"{o.flags[0]}/{o.off}"] if o.off is not None else list(o.flags)
    option = typer.Option(*decls, metavar=o.metavar, help=o.help or None, hidden=o.hidden)
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                             annotation=Annotated[annotation, option])


def record(**values: Any) -> None:
    """Run CMD (or, without CMD, watch the whole machine) and record its process tree.

    CMD runs as the user behind sudo (unless --as-root) and keeps the terminal;
    `record` exits with CMD's status (127/126 when CMD cannot be found or run).
    """
    raise typer.Exit(cli.record(values))


_RECORD_PARAMS = [
    inspect.Parameter(
        "command", inspect.Parameter.KEYWORD_ONLY, default=None,
        # shown in the usage line and the docstring (an Arguments section would print
        # its Python type)
        annotation=Annotated[Optional[list[str]],  # noqa: UP045
                             typer.Argument(metavar="-- CMD ARGS", hidden=True)]),
    *(_param(o) for o in RECORD),
]
record.__dict__["__signature__"] = inspect.Signature(_RECORD_PARAMS)
record.__annotations__ = {p.name: p.annotation for p in _RECORD_PARAMS}
app.command(context_settings={"allow_interspersed_args": False})(record)


@app.command()
def doctor() -> None:
    """Check what recording needs on this machine and which backend `auto` picks."""
    from proctrace_bcc.doctor import run_doctor

    raise typer.Exit(run_doctor())


__all__ = ["app", "default_input", "fail"]
