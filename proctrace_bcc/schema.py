"""What a recording's fields may hold: every field of every event, checked once, at the reader.

The schema is the events' dataclasses (:mod:`proctrace_bcc.events`: a field's type, and
whether it has a default) plus the integer ranges of :data:`RANGES` (docs/format.md,
"Validation and limits").  :func:`check_event` is called by the reader
(:mod:`proctrace_bcc.read.lines`) on every event body before anything else sees it, and
:func:`check_header` by :func:`proctrace_bcc.codec.header_from_obj`; what passes can be
used as it is by the fast paths (tree.FastBuilder, membership, codec.fast_event), which
only still decide between a plain str and a ``{"b64": ...}`` string.

Each kind's check is compiled from the schema into straight-line code (:func:`_compile`:
a type test and a chained comparison a field, no loop, no call), fast enough to run on
every line.  What it does not decide (``{"b64": ...}`` strings, ``fds``, ``env``, and
anything wrong) is checked field by field by :func:`_check_fields`, which also words
the error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from proctrace_bcc.events import EVENT_TYPES, FdInfo, Header, decode_str

# Integer ranges (inclusive), by field name; other integers are in [0, 2^63).
I63 = (0, (1 << 63) - 1)
PID = (1, (1 << 31) - 1)  # a process id (pid_max is at most 2^22)
ID = (0, (1 << 31) - 1)  # a parent pid, process group or session (0: none / outside)
RANGES: dict[str, tuple[int, int]] = {
    "timestamp": I63,
    "pid": PID, "child_pid": PID, "parent_pid": PID, "target_pid": PID, "root_pid": PID,
    "sender_pid": PID, "running": PID,
    "ppid": ID, "pgid": ID, "parent_pgid": ID, "child_pgid": ID, "sid": ID,
    "uid": (0, (1 << 32) - 1),
    "exit_code": (0, 255), "exit_status": (0, 65535),  # a shell status or a wait status
    "signal": (1, 127),
    "errno": (0, 4095),
    "count": (0, (1 << 32) - 1),  # events lost in one report (perf counts them in u32 runs)
    "lost": (0, 1 << 48),  # a whole recording's loss
    "cpu": (0, 65535),
    "schema": (0, 1 << 16),
    "fd": (0, (1 << 31) - 1), "dev": (0, (1 << 64) - 1), "ino": (0, (1 << 64) - 1),
    "flags": (0, (1 << 32) - 1),
}

# Value kinds, from a field's annotation.
INT, STR, BOOL, STRS, INTS, FDS, STRMAP, OBJ = ("int", "str", "bool", "strs", "ints", "fds",
                                                "strmap", "obj")
_KINDS = {
    "int": INT, "str": STR, "StopReason | str": STR, "bool": BOOL, "list[str]": STRS,
    "list[int]": INTS, "list[FdInfo]": FDS, "dict[str, str]": STRMAP, "dict[str, Any]": OBJ,
}
_WHAT = {INT: "an integer", STR: "a string", BOOL: "true or false", STRS: "a list of strings",
         INTS: "a list of integers", FDS: "a list of objects", STRMAP: "an object",
         OBJ: "an object"}


class Field:
    """One field of a kind: its value kind, whether it must be present, null allowed."""

    __slots__ = ("kind", "name", "nullable", "range", "required")

    def __init__(self, name: str, annotation: str, required: bool) -> None:
        self.name = name
        self.nullable = annotation.endswith(" | None")
        base = annotation.removesuffix(" | None")
        if base not in _KINDS:
            raise TypeError(f"schema: no rule for a field typed {annotation!r} ({name})")
        self.kind = _KINDS[base]
        self.required = required
        self.range = RANGES.get(name, I63)


def _schema(cls: type[Any]) -> dict[str, Field]:
    return {f.name: Field(f.name, str(f.type), f.default is MISSING
                          and f.default_factory is MISSING)
            for f in fields(cls)}


SCHEMA: dict[str, dict[str, Field]] = {kind: _schema(cls) for kind, cls in EVENT_TYPES.items()}
# An Exec may leave out cmdline: the codec joins it from argv (events.join_cmdline).
SCHEMA["Exec"]["cmdline"].required = False
HEADER = _schema(Header)
FD = _schema(FdInfo)


def _fail(where: str, f: Field, v: object) -> ValueError:
    if (f.kind is INT and type(v) is int) or (f.kind is INTS and type(v) is list and all(
            type(x) is int for x in v)):
        lo, hi = f.range
        return ValueError(f"{where}.{f.name} out of range [{lo}, {hi}], got {_short(v)}")
    return ValueError(f"{where}.{f.name} must be {_WHAT[f.kind]}, got {_short(v)}")


def _is_str(v: object) -> bool:
    """A JSON string, or a byte-exact one ({"b64": "..."}; see events.encode_str)."""
    if type(v) is str:
        return True
    if type(v) is not dict or len(v) != 1 or type(v.get("b64")) is not str:
        return False
    decode_str(v)  # ValueError: bad base64
    return True


def _in(v: object, rng: tuple[int, int]) -> bool:
    return type(v) is int and rng[0] <= v <= rng[1]


def _ok(f: Field, v: object) -> bool:
    k = f.kind
    if k is INT:
        return _in(v, f.range)
    if k is STR:
        return _is_str(v)
    if k is BOOL:
        return type(v) is bool
    if k is STRS:
        return type(v) is list and all(_is_str(x) for x in v)
    if k is INTS:
        return type(v) is list and all(_in(x, f.range) for x in v)
    if k is STRMAP:
        return type(v) is dict and all(_is_str(x) for x in v.values())
    if k is FDS:
        if type(v) is not list:
            return False
        for x in v:
            if type(x) is not dict:
                raise ValueError(f"{f.name} entries must be objects, got {_short(x)}")
            _check_fields("fd", FD, x)
        return True
    return type(v) is dict


def _short(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _check_fields(where: str, schema: dict[str, Field], body: dict[str, Any]) -> None:
    """Every field of one body against its schema; ValueError names the first bad one.
    Unknown fields are ignored (forward compatible)."""
    for f in schema.values():
        v = body.get(f.name, MISSING)
        if v is MISSING:
            if f.required:
                raise ValueError(
                    f"{where}: missing 1 required positional argument: '{f.name}'")
            continue
        if v is None and f.nullable:
            continue
        if not _ok(f, v):  # ValueError from inside (bad base64, an fds entry) as it is
            raise _fail(where, f, v)


class Unusual(Exception):
    """A body the compiled check does not decide (a b64 string, fds, env, a bad value):
    it is checked field by field."""


def _test(f: Field, v: str) -> str:
    """The expression true when `v` (a local) is a usual value of field f."""
    lo, hi = f.range
    test = {INT: f"type({v}) is int and {lo} <= {v} <= {hi}", STR: f"type({v}) is str",
            BOOL: f"type({v}) is bool",
            # join: a TypeError (field by field) unless every element is a str
            STRS: f"type({v}) is list and type(' '.join({v})) is str"}.get(f.kind, "False")
    if f.nullable:
        return f"({v} is None or {test})"
    return f"({test})"


def _compile(kind: str, cls: type[Any], schema: dict[str, Field]
             ) -> Callable[[dict[str, Any]], None]:
    """The check of one kind as one expression (a type test and a chained comparison a
    field, the fields the writer always writes fetched by one itemgetter): raises
    Unusual for anything that needs _check_fields."""
    always = [f.name for f in fields(cls)
              if not f.metadata.get("omit_default") and schema[f.name].kind in (INT, STR,
                                                                                BOOL, STRS)]
    other = [f for f in schema.values() if f.name not in always]
    names = [f"v{i}" for i in range(len(always))]
    tests = [_test(schema[n], v) for n, v in zip(always, names, strict=True)]
    for f in other:  # omitted when null or default: absent is fine
        v = f"b.get({f.name!r}, _M)"
        tests.append(f"({v} is _M or {_test(f, v)})" if f.kind in (INT, STR, BOOL, STRS)
                     else f"{v} in (_M, None)" if f.nullable else f"{v} is _M")
    src = [f"def check_{kind}(b):",
           "    try:",
           f"        {', '.join(names)}{',' if len(names) == 1 else ''} = _get(b)",
           f"        if {' and '.join(tests)}:",
           "            return",
           "    except (KeyError, TypeError):",
           "        pass",
           "    raise Unusual"]
    scope: dict[str, Any] = {"Unusual": Unusual, "_M": MISSING,
                             "_get": operator.itemgetter(*always) if len(always) > 1
                             else (lambda b, _n=always[0]: (b[_n],))}
    exec("\n".join(src), scope)
    fn: Callable[[dict[str, Any]], None] = scope[f"check_{kind}"]
    return fn


CHECKS = {kind: _compile(kind, EVENT_TYPES[kind], schema) for kind, schema in SCHEMA.items()}


def check_event(tag: str, body: dict[str, Any]) -> None:
    """Check one event body (its kind known, a dict) against the schema; ValueError says
    what is wrong, in the words of the field."""
    try:
        CHECKS[tag](body)
    except Unusual:
        _check_fields(tag, SCHEMA[tag], body)


def check_header(body: object) -> None:
    """Check a Header body against the schema (ValueError says what is wrong)."""
    if not isinstance(body, dict):
        raise ValueError("Header body must be an object")
    _check_fields("Header", HEADER, body)
