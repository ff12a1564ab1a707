"""`analyze -d by-process`: each process's events, processes in fork order.

For each process of the analysed subtree that has events, in the order processes
appeared (fork order): a line ``PID N: <command>`` (its first exec's command line, as
the original printed; ``[fork of P] <command>`` for a process that never exec'd),
then its events as in ``-d sequential``; processes are separated by a blank line.
Events that belong to no process (Lost, End) come last under ``Recording:``.

The streaming form keeps no event object: each cleaned line goes to a temporary
spill file and only its offset is kept (8 bytes per event) until the tree is known.
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from collections.abc import Iterable, Iterator

import orjson

from proctrace_bcc.recording import Recording, event_to_obj
from proctrace_bcc.render import oneline
from proctrace_bcc.render.sequential import line
from proctrace_bcc.stream import Analysis
from proctrace_bcc.tree import Process, ProcessTree, build_tree_with_owners

_NL = orjson.OPT_APPEND_NEWLINE
_FALSE_DEFAULTS = frozenset({"truncated", "core_dumped"})


def title(p: Process) -> str:
    """The header line of one process (without newline)."""
    if p.execs:
        cmd = p.execs[0].cmdline or p.execs[0].filename or ""
        return f"PID {p.pid}: {oneline(cmd) if cmd else '<command unavailable>'}"
    parent = p.parent.pid if p.parent is not None else p.ppid
    if parent:
        if p.inherited_command:
            return f"PID {p.pid}: [fork of {parent}] {oneline(p.inherited_command)}"
        return f"PID {p.pid}: [fork of {parent}]"
    return f"PID {p.pid}: [started before the recording]"


def _blocks(order: Iterable[Process], lines_of: dict[Process | None, list[bytes]]
            ) -> Iterator[bytes]:
    first = True
    for p in order:
        lines = lines_of.get(p)
        if not lines:
            continue
        yield (b"" if first else b"\n") + title(p).encode("utf-8", "surrogateescape") + b"\n"
        yield b"".join(lines)
        first = False
    glob = lines_of.get(None)
    if glob:
        yield (b"" if first else b"\n") + b"Recording:\n" + b"".join(glob)


def render_stream(an: Analysis) -> Iterator[bytes]:
    dumps = orjson.dumps
    falses = _FALSE_DEFAULTS
    offsets: dict[Process | None, array[int]] = {}
    pos = 0
    with tempfile.TemporaryFile(prefix="proctrace-by-process-") as spill:
        for chunk in an.chunks():
            out: list[bytes] = []
            for _, _, tag, body, owner, member in chunk:
                if not member:
                    continue
                b = dumps({tag: {k: v for k, v in body.items()
                                 if v is not None and not (v is False and k in falses)}},
                          option=_NL)
                arr = offsets.get(owner)
                if arr is None:
                    arr = offsets[owner] = array("q")
                arr.append(pos)
                pos += len(b)
                out.append(b)
            spill.write(b"".join(out))
        _, tree = an.finish()
        spill.flush()
        if pos == 0:
            return
        with mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            find = mm.find

            class _Lines(dict[Process | None, list[bytes]]):
                def get(self, key: Process | None, default: object = None) -> list[bytes]:
                    arr = offsets.get(key)
                    if not arr:
                        return []
                    return [mm[o:find(b"\n", o) + 1] for o in arr]

            yield from _blocks(tree.processes, _Lines())


def render(rec: Recording, tree: ProcessTree) -> Iterable[bytes]:
    """The contract form: `rec.events` are the (already selected) events of `tree`."""
    _, owners = build_tree_with_owners(rec.events, rec.header)
    by_key = {p.key: p for p in tree.processes}
    lines_of: dict[Process | None, list[bytes]] = {}
    for ev, o in zip(rec.events, owners, strict=True):
        ((tag, body),) = event_to_obj(ev).items()
        key = None if o is None else by_key.get(o.key)
        if o is not None and key is None:
            continue
        lines_of.setdefault(key, []).append(line(tag, body))
    return _blocks(tree.processes, lines_of)
