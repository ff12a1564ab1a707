"""Recordings written by the original proctrace (Rust).

Two shapes exist: the one in its documentation (no header; Fork/Exec/Exit with
a `cmdline` string) and a later one with `seq` fields and ExecFull/ExecArgs/
ExecFilename/BadExec records.  The first shape parses as our own events (our
extra fields are optional); this module converts the later one.
"""

from __future__ import annotations

from typing import Any

from proctrace_bcc.events import Event

# Tags that only the original's later format uses.
LEGACY_TAGS: frozenset[str] = frozenset({"ExecFull", "ExecArgs", "ExecFilename", "BadExec"})


def convert(tag: str, body: Any) -> Event | None:
    """Convert one record of the original's later format (TODO: complete in issue 2)."""
    raise ValueError(f"unsupported legacy record {tag!r}")


def finish(events: list[Event]) -> list[Event]:
    """Post-process a legacy recording after all records were read."""
    return events
