"""What a recording's fields may hold: every field of every event, checked once, at the reader.

The schema is the events' dataclasses (:mod:`proctrace_bcc.events`: a field's type, and
whether it has a default) plus the integer ranges of :data:`RANGES` (docs/format.md,
"Validation and limits").  Every event body is checked by the reader
(:mod:`proctrace_bcc.read.lines`: a usual line in one step, :data:`LINE_DECODERS`;
:func:`checked` for the others and for the converted formats) before anything else sees
it, and the Header by :func:`check_header` (from
:func:`proctrace_bcc.codec.header_from_obj`).  A body that step passes holds plain
values only, and the fast paths (lineage.Lineage.add_body, codec.fast_event) use it as
it is; one it refuses but the field-by-field check passes reaches them as an
:class:`Irregular`, which they leave to the reference path.

Each kind's plain body is also a type for msgspec (:data:`PLAIN`, derived from the same
schema): the reader parses and checks a usual line in one step, in C
(:data:`LINE_DECODERS`).  What that step refuses (``{"b64": ...}`` strings, ``fds``,
``env``, the rare kinds, and anything wrong) is checked field by field by
:func:`_check_fields`, which also words the error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Annotated, Any, NotRequired, TypedDict, Union

import msgspec

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


def _plain_type(f: Field, always: bool) -> Any:
    """The msgspec type of field f's plain values (None: only null or absent)."""
    lo, hi = f.range
    base: Any = {INT: Annotated[int, msgspec.Meta(ge=lo, le=hi)], STR: str, BOOL: bool,
                 STRS: list[str]}.get(f.kind, type(None))
    t = Union[base, None] if f.nullable else base  # noqa: UP007 (a runtime type)
    return t if always else NotRequired[t]


def _plain(kind: str, cls: type[Any], schema: dict[str, Field]) -> Any:
    """The plain body of one kind as a TypedDict for msgspec (None: the kind has none):
    every field the writer always writes (ints in range, str, lists of str, bool; null
    where allowed), the others absent or of those values, anything else (``fds``,
    ``env``: only null).  Unknown fields are ignored, and left out of the body."""
    always = {f.name for f in fields(cls) if not f.metadata.get("omit_default")
              and schema[f.name].kind in (INT, STR, BOOL, STRS)}
    if any(f.name not in always and f.kind not in (INT, STR, BOOL, STRS) and not f.nullable
           for f in schema.values()):
        return None  # a field plain only when absent (End.running, FdSnapshot.fds)
    td: Any = TypedDict  # the functional form, fields computed
    return td(f"{kind}Body", {f.name: _plain_type(f, f.name in always)
                              for f in schema.values()})


PLAIN: dict[str, Any] = {kind: t for kind, schema in SCHEMA.items()
                         if (t := _plain(kind, EVENT_TYPES[kind], schema)) is not None}


def _line_decoder(kind: str) -> tuple[str, Callable[[bytes], Any], Callable[[Any], Any]]:
    line = msgspec.defstruct(f"{kind}Line", [(kind, PLAIN[kind])], forbid_unknown_fields=True)
    return kind, msgspec.json.Decoder(line).decode, operator.attrgetter(kind)


# The reader's one step for a usual line, by how the writer starts it (b'{"Exec":...'):
# the name of its kind, as bytes -> (kind, decode the whole line, its body).  The decoder
# checks the line in C: one key, the kind's plain body; a ValueError (msgspec's) for
# anything else, which the reader then checks with `checked`.
LINE_DECODERS = {kind.encode(): _line_decoder(kind) for kind in PLAIN}


class Irregular(dict[str, Any]):
    """A body the one-step check (PLAIN) refused and the field-by-field check passed: it
    may hold ``{"b64": ...}`` strings, ``fds`` or ``env``.  The fast paths
    (lineage.Lineage.add_body, codec.fast_event) leave it to codec.event_from_obj; every
    other body the reader passes on is a plain ``dict`` of plain values (ints in range,
    str, lists of str), which they take as it is."""

    __slots__ = ()


def checked(tag: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check one event body (its kind known, a dict) against the schema; ValueError says
    what is wrong, in the words of the field.  Returns the body as the fast paths may
    take it, unknown fields left out: plain, else an Irregular."""
    plain = PLAIN.get(tag)
    if plain is not None:
        try:
            b: dict[str, Any] = msgspec.convert(body, plain)
        except msgspec.ValidationError:
            pass
        else:
            return b
    schema = SCHEMA[tag]
    _check_fields(tag, schema, body)
    return Irregular({k: v for k, v in body.items() if k in schema})


def check_header(body: object) -> None:
    """Check a Header body against the schema (ValueError says what is wrong)."""
    if not isinstance(body, dict):
        raise ValueError("Header body must be an object")
    _check_fields("Header", HEADER, body)
