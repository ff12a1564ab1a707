"""`proctrace-bcc ingest`: cut the subtree of one process out of a raw recording.

Keeps the events of ROOT_PID's process (the first process with that pid in the
recording) and of every process forked from it, directly or not, plus Lost and End.
A process belongs to the tree it was forked in: being reparented to init or to a
subreaper when its parent exits does not take it out.  Events are attributed to
processes by the same rules as `analyze` (proctrace_bcc.tree; PID reuse starts a new
process).  The output is a recording of ours: a Header (the input's, when it has one)
with ``root_pid`` set and ``raw`` false, then the kept events in timestamp order,
bodies as in the input (recordings of the original proctrace are converted).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from proctrace_bcc import __version__
from proctrace_bcc.analysis import Analysis
from proctrace_bcc.analyze import OutputSink
from proctrace_bcc.codec import dumps_header
from proctrace_bcc.events import Header
from proctrace_bcc.read import ORDERS, OutOfOrder, Source

_NL = orjson.OPT_APPEND_NEWLINE


def _header(an: Analysis, root_pid: int) -> Header:
    h = an.reader.header
    if h is None:
        h = Header(version=__version__, backend="proctrace (original)")
    options = dict(h.options)
    options["ingested_from"] = os.path.basename(an.name)
    if an.reader.converted:
        options["legacy"] = True  # pgid values and exit statuses are the original's
    return Header(format=h.format, schema=h.schema, version=h.version, backend=h.backend,
                  kernel=h.kernel, hostname=h.hostname, command=h.command, root_pid=root_pid,
                  raw=False, start_time=h.start_time, options=options)


def _write(src: Source, root_pid: int, order: str, sink: OutputSink) -> list[str]:
    an = Analysis(src, root_pid, order=order, tree=False)
    dumps = orjson.dumps
    w = sink.f.write
    w(dumps_header(_header(an, root_pid)))
    for chunk in an.chunks():
        out = [dumps({tag: body}, option=_NL) for _, _, tag, body, _, member in chunk if member]
        if out:
            w(b"".join(out))
    an.check()  # raises if ROOT_PID never appeared
    return an.warnings


def ingest(input: str, root_pid: int, output: Path | None) -> None:
    """Write the subtree of `root_pid` in `input` (path or '-') to `output` (None: stdout)."""
    import gc

    gc.disable()  # see analyze()
    try:
        _ingest(input, root_pid, output)
    finally:
        gc.enable()


def _ingest(input: str, root_pid: int, output: Path | None) -> None:
    import sys

    warnings: list[str] = []
    with Source(input) as src:
        sink = OutputSink(output)
        try:
            for order in ORDERS:
                try:
                    warnings = _write(src, root_pid, order, sink)
                    break
                except OutOfOrder:
                    sink.reset()
            sink.commit()
        finally:
            sink.discard()
    for w in warnings:
        sys.stderr.write(f"proctrace-bcc: warning: {w}\n")
