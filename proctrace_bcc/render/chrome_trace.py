"""`analyze -d chrome-trace`: the Trace Event Format (JSON) read by ui.perfetto.dev and
chrome://tracing.

Layout of the output (object form, `displayTimeUnit` "ms", timestamps in microseconds
from the first event of the recording, floats keep nanosecond precision):

- one track per process: `pid` and `tid` are the track id, which is the process's pid
  unless that pid was used by an earlier process of the recording (PID reuse), in which
  case the track gets a fresh id above every real pid; the real pid is in the args and
  the track name.  Metadata events `process_name`, `thread_name` (the command) and
  `process_sort_index` (tree order) name and order the tracks;
- one complete event (`ph: "X"`) per exec span; the last one of an exited process
  carries the exit status in its args;
- a flow (`ph: "s"` on the parent, `ph: "f"` with `bp: "e"` on the child, one id per
  fork) from parent to child at each fork;
- instant events (`ph: "i"`, thread scope) for setpgid, setsid and failed execs, and
  global instants for lost events.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterator
from typing import Any

import orjson

from proctrace_bcc import __version__
from proctrace_bcc.events import ExecFailed, Lost, SetPGID, SetSID, display
from proctrace_bcc.read import Recording
from proctrace_bcc.render import json_safe
from proctrace_bcc.render._common import (
    ProcessLocator,
    event_pid,
    header_command,
    spans,
    tree_rows,
)
from proctrace_bcc.tree import Process, ProcessTree

NAME_MAX = 300  # characters of a command kept in event and track names (args keep it all)


def _short(s: str) -> str:
    return s if len(s) <= NAME_MAX else s[: NAME_MAX - 1] + "…"


def _errno_name(n: int) -> str:
    return _errno.errorcode.get(n, f"errno {n}")


def track_ids(rows: list[Process]) -> dict[int, int]:
    """id(process) -> track id: the pid, or a fresh id for a reused pid."""
    used: set[int] = set()
    out: dict[int, int] = {}
    next_free = max((p.pid for p in rows), default=0) + 1
    for p in sorted(rows, key=lambda q: (q.start, q.pid)):
        if p.pid in used:
            out[id(p)] = next_free
            next_free += 1
        else:
            used.add(p.pid)
            out[id(p)] = p.pid
    return out


def trace_events(rec: Recording, tree: ProcessTree) -> tuple[list[dict[str, Any]],
                                                              dict[str, Any]]:
    """The events (metadata first, then by time) and the `otherData` of the trace."""
    rows = tree_rows(tree)
    t0 = tree.start
    end = tree.end
    tracks = track_ids(rows)

    def us(t: int) -> float:
        return round((t - t0) / 1000, 3)

    meta: list[dict[str, Any]] = []
    timed: list[dict[str, Any]] = []
    for index, p in enumerate(rows):
        tid = tracks[id(p)]
        name = _short(display(p.command))
        if tid != p.pid:
            name = f"{name} [pid {p.pid}, reused]"
        meta.append({"ph": "M", "name": "process_name", "pid": tid, "tid": tid,
                     "args": {"name": name}})
        meta.append({"ph": "M", "name": "process_sort_index", "pid": tid, "tid": tid,
                     "args": {"sort_index": index}})
        meta.append({"ph": "M", "name": "thread_name", "pid": tid, "tid": tid,
                     "args": {"name": name}})
        sps = spans(p, end)
        for k, sp in enumerate(sps):
            args: dict[str, Any] = {"pid": p.pid, "ppid": p.ppid, "pgid": p.pgid,
                                    "sid": p.sid}
            if sp.image is None:
                args["image"] = "inherited from the parent (before any exec)"
            else:
                im = sp.image
                args["argv"] = ([display(a) for a in im.argv] if im.argv is not None
                                else display(im.cmdline))
                if im.filename is not None:
                    args["filename"] = display(im.filename)
                if im.interpreter:
                    args["interpreter"] = [display(a) for a in im.interpreter]
                if im.truncated:
                    args["argv_truncated"] = True
            if k < len(sps) - 1:
                args["ended_by"] = "exec"
            else:
                args["status"] = p.status()
                if p.exit is not None:
                    args["exit_code"] = p.exit.exit_code
                    args["signal"] = p.exit.signal
                    if p.exit.core_dumped:
                        args["core_dumped"] = True
            timed.append({"ph": "X", "cat": "exec", "name": _short(display(sp.label)),
                          "ts": us(sp.start), "dur": round((sp.end - sp.start) / 1000, 3),
                          "pid": tid, "tid": tid, "args": args})
        for fe in p.failed_execs:
            timed.append(_failed_exec(fe, us(fe.timestamp), tid))

    flow_id = 0
    in_tree = {id(p) for p in rows}
    for p in rows:
        par = p.parent
        if par is None or id(par) not in in_tree or p.fork_time is None:
            continue
        flow_id += 1
        ts = us(p.fork_time)
        ptid, ctid = tracks[id(par)], tracks[id(p)]
        timed.append({"ph": "s", "cat": "fork", "name": "fork", "id": flow_id, "ts": ts,
                      "pid": ptid, "tid": ptid, "args": {"child_pid": p.pid}})
        timed.append({"ph": "f", "bp": "e", "cat": "fork", "name": "fork", "id": flow_id,
                      "ts": ts, "pid": ctid, "tid": ctid, "args": {"parent_pid": par.pid}})

    locate = ProcessLocator(rows, end)
    global_track = tracks[id(rows[0])] if rows else 0
    for ev in rec.events:
        if isinstance(ev, (SetPGID, SetSID)):
            pid = event_pid(ev)
            owner = locate.at(pid, ev.timestamp) if pid is not None else None
            if owner is None:
                continue
            tid = tracks[id(owner)]
            if isinstance(ev, SetPGID):
                args = {"caller_pid": ev.pid, "target_pid": ev.target_pid, "pgid": ev.pgid}
                name = f"setpgid({ev.target_pid}, {ev.pgid})"
            else:
                args = {"pid": ev.pid, "sid": ev.sid, "pgid": ev.pgid}
                name = f"setsid() = {ev.sid}"
            timed.append({"ph": "i", "s": "t", "cat": "pgrp", "name": name,
                          "ts": us(ev.timestamp), "pid": tid, "tid": tid, "args": args})
        elif isinstance(ev, Lost) and rows:
            timed.append({"ph": "i", "s": "g", "cat": "lost", "name": f"lost {ev.count} events",
                          "ts": us(ev.timestamp), "pid": global_track, "tid": global_track,
                          "args": {"count": ev.count, "cpu": ev.cpu}})

    timed.sort(key=lambda e: e["ts"])
    h = tree.header
    other: dict[str, Any] = {
        "generator": f"proctrace-bcc {__version__}",
        "command": header_command(tree, rows),
        "origin_ns": str(t0),
        "processes": str(len(rows)),
        "lost_events": str(tree.lost),
    }
    if h is not None:
        other.update(backend=h.backend, host=h.hostname, kernel=h.kernel,
                     start_time=h.start_time)
    if tree.end_event is not None:
        other["end_reason"] = tree.end_event.reason
    return meta + timed, other


def _failed_exec(fe: ExecFailed, ts: float, tid: int) -> dict[str, Any]:
    name = f"exec failed: {_short(display(fe.filename))}"
    return {"ph": "i", "s": "t", "cat": "exec", "name": name, "ts": ts, "pid": tid, "tid": tid,
            "args": {"filename": display(fe.filename), "errno": fe.errno,
                     "error": _errno_name(fe.errno)}}


def render(rec: Recording, tree: ProcessTree) -> Iterator[str]:
    events, other = trace_events(rec, tree)
    yield '{"displayTimeUnit":"ms","otherData":'
    yield json_safe(orjson.dumps(other)).decode()
    yield ',"traceEvents":[\n'
    chunk: list[bytes] = []
    for i, ev in enumerate(events):
        chunk.append(orjson.dumps(ev))
        if len(chunk) >= 2000:
            yield json_safe(b",\n".join(chunk)).decode() + (",\n" if i < len(events) - 1
                                                            else "")
            chunk = []
    if chunk:
        yield json_safe(b",\n".join(chunk)).decode()
    yield "\n]}\n"
