"""Events <-> the JSON objects of a recording line (externally tagged, one per line).

Strings from the kernel are byte-exact: valid UTF-8 is written as a JSON string, anything
else as ``{"b64": ...}`` (:func:`proctrace_bcc.events.encode_str`, applied here to every
string field).  Every body read was first checked against the schema by the reader
(:mod:`proctrace_bcc.schema`: types and ranges of every field, once); :func:`event_from_obj`
builds the event (decoding ``{"b64": ...}`` strings), :func:`fast_event` the same for
the plain bodies the reader passes on, faster.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from proctrace_bcc.events import (
    EVENT_TYPES,
    Event,
    Exec,
    FdInfo,
    Header,
    decode_str,
    encode_str,
    join_cmdline,
)
from proctrace_bcc.schema import check_header

# The integer fields each kind must have (checked on every event read).
INT_FIELDS: dict[str, tuple[str, ...]] = {
    "Fork": ("timestamp", "parent_pid", "child_pid", "parent_pgid"),
    "Exec": ("timestamp", "pid", "ppid", "pgid"),
    "ExecFailed": ("timestamp", "pid", "errno"),
    "Exit": ("timestamp", "pid", "ppid", "pgid"),
    "SetPGID": ("timestamp", "pid", "ppid", "pgid", "target_pid"),
    "SetSID": ("timestamp", "pid", "ppid", "pgid"),
    "Lost": ("timestamp", "count"),
    "FdSnapshot": ("timestamp", "pid"),
    "ProcState": ("timestamp", "pid"),
    "Signal": ("timestamp", "pid", "signal"),
    "End": ("timestamp",),
}
# Other fields whose type reading checks: (name, type, may be None).
TYPED_FIELDS: dict[str, tuple[tuple[str, type, bool], ...]] = {
    "ProcState": (("trigger", str, False), ("state", str, False), ("wchan", str, True)),
    "Signal": (("sender_pid", int, True), ("by_recorder", bool, False)),
}
# Fields holding kernel strings (byte-exact: see encode_str).
_STR_LIST_FIELDS = ("argv", "interpreter", "stack")
_STR_FIELDS = ("filename", "path", "sender_comm")


def _fd_to_obj(fd: FdInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"fd": fd.fd, "kind": fd.kind, "dev": fd.dev, "ino": fd.ino}
    if fd.path is not None:
        d["path"] = encode_str(fd.path)
    if fd.inherited is not None:
        d["inherited"] = fd.inherited
    if fd.flags is not None:
        d["flags"] = fd.flags
    return d


def event_to_obj(ev: Event) -> dict[str, Any]:
    """The externally tagged JSON object of one event."""
    body: dict[str, Any] = {}
    for f in fields(ev):
        v = getattr(ev, f.name)
        if f.name == "fds":
            if v is None:
                continue
            v = [_fd_to_obj(x) for x in v]
        elif f.name == "env":
            if v is None:
                continue
            v = {name: encode_str(x) for name, x in v.items()}
        elif f.name in _STR_LIST_FIELDS and v is not None:
            v = [encode_str(x) for x in v]
        elif f.name in _STR_FIELDS and v is not None:
            v = encode_str(v)
        elif f.metadata.get("omit_default") and v == f.default:
            continue
        body[f.name] = v
    return {ev.KIND: body}


def dumps_event(ev: Event) -> bytes:
    return orjson.dumps(event_to_obj(ev), option=orjson.OPT_APPEND_NEWLINE)


def _encode_any(v: Any) -> Any:
    """`v` with every string in it byte-exact (encode_str), lists and objects included."""
    if isinstance(v, str):
        return encode_str(v)
    if isinstance(v, list):
        return [_encode_any(x) for x in v]
    if isinstance(v, dict):
        return {k: _encode_any(x) for k, x in v.items()}
    return v


def dumps_header(h: Header) -> bytes:
    """The Header line; every string in it byte-exact, like events' (a non-UTF-8 argv
    of CMD is ``{"b64": ...}`` in ``command``)."""
    body = {f.name: _encode_any(getattr(h, f.name)) for f in fields(h)}
    return orjson.dumps({"Header": body}, option=orjson.OPT_APPEND_NEWLINE)


def _fd_from_obj(o: Any) -> FdInfo:
    if not isinstance(o, dict):
        raise ValueError("fds entries must be objects")
    path = o.get("path")
    return FdInfo(
        fd=int(o["fd"]), kind=str(o["kind"]), dev=int(o.get("dev", 0)), ino=int(o.get("ino", 0)),
        path=decode_str(path) if path is not None else None,
        inherited=o.get("inherited"), flags=o.get("flags"),
    )


def event_from_obj(kind: str, body: dict[str, Any]) -> Event:
    """Build one of our events from its tag and body; ValueError says what is wrong."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    if not isinstance(body, dict):
        raise ValueError(f"{kind}: body must be an object")
    kw: dict[str, Any] = {}
    names = {f.name: f for f in fields(cls)}
    for k, v in body.items():
        if k not in names:
            continue  # forward compatible: ignore fields we do not know
        if k == "fds":
            v = None if v is None else [_fd_from_obj(x) for x in v]
        elif k == "env" and v is not None:
            if not isinstance(v, dict):
                raise ValueError(f"{kind}.env must be an object")
            v = {name: decode_str(x) for name, x in v.items()}
        elif k in _STR_LIST_FIELDS and v is not None:
            if not isinstance(v, list):
                raise ValueError(f"{kind}.{k} must be a list")
            v = [decode_str(x) for x in v]
        elif k in _STR_FIELDS and v is not None:
            v = decode_str(v)
        kw[k] = v
    if cls is Exec and "cmdline" not in kw:
        kw["cmdline"] = join_cmdline(kw.get("argv") or [])
    try:
        ev: Event = cls(**kw)
    except TypeError as exc:
        msg = str(exc)
        if "missing" in msg:
            missing = msg.split("missing", 1)[1].strip()
            raise ValueError(f"{kind}: missing {missing}") from None
        raise ValueError(f"{kind}: {msg}") from None
    for name in INT_FIELDS[kind]:
        v = getattr(ev, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{kind}.{name} must be an integer, got {v!r}")
    for name, typ, nullable in TYPED_FIELDS.get(kind, ()):
        v = getattr(ev, name)
        if not (type(v) is typ or (v is None and nullable)):
            raise ValueError(f"{kind}.{name} must be {typ.__name__}"
                             f"{' or null' if nullable else ''}, got {v!r}")
    return ev


def fast_event(tag: str, body: dict[str, Any]) -> Event:
    """event_from_obj for a body the reader passed on, without its checks: a plain dict
    holds plain values only (proctrace_bcc.schema.checked), so the event is made from it
    as it is; an Irregular body (b64 strings, fds, env) or a field this version does
    not know goes to event_from_obj."""
    if type(body) is dict:
        try:
            ev: Event = EVENT_TYPES[tag](**body)
            return ev
        except TypeError:  # not one of the reader's bodies (it leaves unknown fields out)
            pass
    return event_from_obj(tag, body)


def header_from_obj(body: Any) -> Header:
    check_header(body)  # every field against the schema (proctrace_bcc.schema)
    names = {f.name for f in fields(Header)}
    kw = {k: v for k, v in body.items() if k in names}
    for k, v in kw.items():  # byte-exact strings back (options are kept as written)
        if k == "command" and v is not None:
            kw[k] = [decode_str(a) for a in v]
        elif k != "options" and isinstance(v, dict):
            kw[k] = decode_str(v)
    h = Header(**kw)
    if h.schema != 1:
        raise ValueError(f"unsupported schema {h.schema!r} (this version reads schema 1)")
    return h


class Slow(Exception):
    """A fast path declines this body: it needs event_from_obj (and its messages)."""
