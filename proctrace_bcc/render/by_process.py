"""`analyze -d by-process`: each process's events, processes in fork order.

For each process of the analysed subtree that has events, in the order processes
appeared (fork order): a line ``PID N: <command>`` (its first exec's command line, as
the original printed; ``[fork of P] <command>`` for a process that never exec'd),
then its events as in ``-d sequential``; processes are separated by a blank line.
Events that belong to no process (Lost, End) come last under ``Recording:``.

The streaming form keeps no event object and builds no tree: each cleaned line goes
to a temporary spill file and only its offset is kept (8 bytes per event), with a
few fields per process (membership.Light: pid, parent, first command).
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from collections.abc import Iterator

import orjson

from proctrace_bcc.analysis import Analysis
from proctrace_bcc.membership import Light
from proctrace_bcc.render import json_safe, oneline
from proctrace_bcc.render.sequential import clean

_NL = orjson.OPT_APPEND_NEWLINE
_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)


def light_title(p: Light) -> str:
    """The header line of one process (without newline), from what
    membership.Membership(info=True) keeps of it."""
    if p.first is not None:
        return f"PID {p.pid}: {oneline(p.first) if p.first else '<command unavailable>'}"
    if p.ppid:
        if p.inherited:
            return f"PID {p.pid}: [fork of {p.ppid}] {oneline(p.inherited)}"
        return f"PID {p.pid}: [fork of {p.ppid}]"
    return f"PID {p.pid}: [started before the recording]"


def render_stream(an: Analysis) -> Iterator[bytes]:
    dumps = orjson.dumps
    offsets: dict[Light | None, array[int]] = {}
    pos = 0
    with tempfile.TemporaryFile(prefix="proctrace-by-process-") as spill:
        for chunk in an.chunks():
            out: list[bytes] = []
            for _, _, tag, body, owner, member in chunk:
                if not member:
                    continue
                b = dumps({tag: clean(body)}, option=_NL)
                if not b.isascii() or b"\x7f" in b:
                    b = json_safe(b)
                arr = offsets.get(owner)
                if arr is None:
                    arr = offsets[owner] = array("q")
                arr.append(pos)
                pos += len(b)
                out.append(b)
            spill.write(b"".join(out))
        an.check()
        spill.flush()
        if pos == 0:
            return
        order = sorted((p for p in offsets if p is not None), key=lambda p: p.seq)
        with mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            find = mm.find
            first = True
            for i, p in enumerate(order):
                if i % 4096 == 4095 and _DONTNEED is not None:
                    # Pages already copied out need not stay mapped: keeps RSS low.
                    mm.madvise(_DONTNEED)
                lines = [mm[o:find(b"\n", o) + 1] for o in offsets[p]]
                head = light_title(p).encode("utf-8", "surrogateescape") + b"\n"
                yield (b"" if first else b"\n") + head + b"".join(lines)
                first = False
            glob = offsets.get(None)
            if glob:
                lines = [mm[o:find(b"\n", o) + 1] for o in glob]
                yield (b"" if first else b"\n") + b"Recording:\n" + b"".join(lines)
