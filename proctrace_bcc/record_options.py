"""`record`'s options: one table, read by two parsers.

typer (commands.py) builds the `record` command from it: its --help, its error
messages and every command line out of the ordinary.  `parse` reads the plain
ones itself, without importing typer, pydantic or rich (a quarter of a second
that `record` would pay on every run): each option as a whole word, its value as
the next word or after `=`, CMD after `--` or the first word that is not an
option.  Whatever it is not sure to read as typer would (-h/--help, an unknown
option, clustered short flags, a missing value, a value that starts with `-` or
is empty, a number that is not plain digits) it leaves to typer: None.
tests/unit/test_record_options.py proves both read the same RecordOptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proctrace_bcc.record import RecordOptions

DEFAULT_RECORDING = "proctrace.ndjson"  # what `record` writes without -o


@dataclass(frozen=True, slots=True)
class Opt:
    """One option of `record`: `name` is its parameter (a RecordOptions field but for
    no_cache), `kind` the type of its value (bool: a flag, `off` its negative form)."""

    name: str
    flags: tuple[str, ...]
    kind: type
    default: Any
    help: str
    metavar: str | None = None
    optional: bool = False  # None unless given (no default shown)
    multiple: bool = False  # repeatable: the list of the values given, else None
    off: str | None = None
    hidden: bool = False


RECORD: tuple[Opt, ...] = (
    Opt("output", ("-o", "--output"), Path, Path(DEFAULT_RECORDING), "Recording file.",
        "PATH"),
    Opt("backend", ("--backend",), str, "auto",
        "Backend: auto picks BCC, else bpftrace (see doctor).", "auto|bcc|bpftrace"),
    Opt("raw", ("--raw",), bool, False,
        "With CMD: keep every event of the machine (the header notes CMD's pid; see "
        "ingest)."),
    Opt("timeout", ("--timeout",), float, None,
        "Stop recording after SECS seconds (CMD gets SIGTERM; exit 124).", "SECS",
        optional=True),
    Opt("grace", ("--grace",), float, None,
        "Once CMD exits, wait at most SECS for its descendants.", "SECS", optional=True),
    Opt("kill_leftovers", ("--kill-leftovers",), bool, False,
        "When recording stops (timeout, grace, Ctrl-C), end what still runs of the tree "
        "(SIGTERM, then SIGKILL after 2 s)."),
    Opt("as_root", ("--as-root",), bool, False, "Under sudo, run CMD as root."),
    Opt("fds", ("--fds",), bool, False, "Record open descriptors at each exec.",
        off="--no-fds"),
    Opt("env", ("--env",), str, None,
        "Record this environment variable's value at each exec (repeatable; `--env "
        "tests`: the test runners' variables, for `analyze -d tests`; none by default).",
        "NAME", optional=True, multiple=True),
    Opt("buffer_pages", ("--buffer-pages",), int, 256,
        "Perf buffer pages per CPU (power of two).", "PAGES"),
    Opt("argv_max", ("--argv-max",), int, 49152,
        "Bytes of argv kept per exec, at most 49152 (BCC).", "BYTES"),
    Opt("bpftrace_path", ("-b", "--bpftrace-path"), str, None, "bpftrace binary to use.",
        "PATH", optional=True),
    Opt("quiet", ("-q", "--quiet"), bool, False, "No live status line."),
    Opt("print_bpf", ("--print-bpf",), bool, False, "", hidden=True),
    Opt("no_cache", ("--no-cache",), bool, False,
        "BCC: compile the BPF program even if the cache holds it (and store the new one)."),
)

# The words `parse` converts itself (anything else: typer's conversion and messages).
_PLAIN = {int: re.compile(r"0|[1-9][0-9]*"), float: re.compile(r"[0-9]+(\.[0-9]+)?")}


def _flags() -> dict[str, tuple[Opt, bool]]:
    """Each flag -> its option and the value a bool flag sets."""
    out: dict[str, tuple[Opt, bool]] = {}
    for o in RECORD:
        out.update((f, (o, True)) for f in o.flags)
        if o.off is not None:
            out[o.off] = (o, False)
    return out


def _value(o: Opt, word: str) -> Any:
    """`word` converted as typer converts it, or None when only typer should."""
    if not word or (word.startswith("-") and word != "-"):
        return None
    plain = _PLAIN.get(o.kind)
    if plain is not None:
        return o.kind(word) if plain.fullmatch(word) else None
    return o.kind(word)


def parse(args: list[str]) -> dict[str, Any] | None:
    """The parameters of `record ARGS` (each option's, and `command`: CMD or None), or
    None when typer should read ARGS (see the module's doc)."""
    flags = _flags()
    values: dict[str, Any] = {o.name: o.default for o in RECORD}
    command: list[str] | None = None
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--" or not word.startswith("-") or word == "-":
            command = args[i + (word == "--"):] or None
            break
        flag, eq, given = word.partition("=") if word.startswith("--") else (word, "", "")
        hit = flags.get(flag)
        if hit is None:
            return None
        o, on = hit
        if o.kind is bool:
            if eq:
                return None
            values[o.name] = on
        else:
            if not eq:
                i += 1
                if i == len(args):
                    return None
                given = args[i]
            v = _value(o, given)
            if v is None:
                return None
            values[o.name] = [*(values[o.name] or []), v] if o.multiple else v
        i += 1
    values["command"] = command
    return values


def to_options(values: dict[str, Any]) -> RecordOptions:
    """RecordOptions from `record`'s parameters (either parser's)."""
    from proctrace_bcc.record import RecordOptions

    v = dict(values)
    command = list(v.pop("command") or [])
    return RecordOptions(command=command, cache=not v.pop("no_cache"), **v)
