"""The reader's one-step check (schema.LINE_DECODERS, msgspec types derived from the
schema) against the field-by-field check it stands in for (schema._check_fields): it
never accepts what the schema refuses, and what it accepts is plain (no b64 string,
no fds, no env), exactly as orjson parsed it, unknown fields left out."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from proctrace_bcc.read.lines import Lines
from proctrace_bcc.read.source import Source
from proctrace_bcc.schema import LINE_DECODERS, PLAIN, SCHEMA, Irregular, _check_fields, checked

# Values of every JSON kind, the ranges' edges included.
VALUES: list[Any] = [0, 1, -1, 2, 255, 256, 4095, 4096, (1 << 31) - 1, 1 << 31, (1 << 32) - 1,
                     1 << 32, (1 << 63) - 1, 1 << 63, 1.0, 0.5, True, False, None, "", "x",
                     {"b64": "/w=="}, {"b64": 1}, [], ["a"], ["a", 2], [{"b64": "/w=="}], [1],
                     {}, {"A": "v"}]


def _sample(kind: str) -> dict[str, Any]:
    """A body of `kind` the schema accepts, every field present: the first value of
    VALUES each field takes."""
    body: dict[str, Any] = {}
    for name, f in SCHEMA[kind].items():
        for v in VALUES:
            try:
                _check_fields(kind, {name: f}, {name: v})
            except ValueError:
                continue
            body[name] = v
            break
    return body


def _schema_ok(kind: str, body: dict[str, Any]) -> bool:
    try:
        _check_fields(kind, SCHEMA[kind], body)
    except ValueError:
        return False
    return True


def _plain(kind: str, body: dict[str, Any]) -> bool:
    """No b64 string, no fds, no env: nothing the fast paths would have to decode."""
    return not any(type(v) is dict or (type(v) is list and any(type(x) is not str for x in v))
                   for k, v in body.items() if k in SCHEMA[kind])


@pytest.mark.parametrize("kind", sorted(PLAIN))
def test_one_step_never_accepts_what_the_schema_refuses(kind: str) -> None:
    rnd = random.Random(kind)
    base = _sample(kind)
    assert _schema_ok(kind, base)
    bodies = [base]
    for name, v in itertools.product([*SCHEMA[kind], "unknown"], VALUES):
        bodies.append({**base, name: v})
    for name in base:
        bodies.append({k: v for k, v in base.items() if k != name})
    for _ in range(300):  # several fields changed at once
        b = dict(base)
        for name in rnd.sample(list(SCHEMA[kind]), 3):
            b[name] = rnd.choice(VALUES)
        bodies.append(b)
    _, decode, body_of = LINE_DECODERS[kind.encode()]
    accepted = 0
    for b in bodies:
        line = orjson.dumps({kind: b}) + b"\n"
        try:
            got = body_of(decode(line))
        except ValueError:
            continue  # refused: the reader checks it field by field (careful path)
        accepted += 1
        assert _schema_ok(kind, b), b
        assert _plain(kind, b), b
        assert type(got) is dict
        assert got == {k: v for k, v in b.items() if k in SCHEMA[kind]}
        assert checked(kind, dict(b)) == got and type(checked(kind, dict(b))) is dict
    assert accepted > 10


def test_refused_but_valid_lines_reach_the_fast_paths_as_irregular() -> None:
    body = {**_sample("Exec"), "filename": {"b64": "/w=="}, "extra": 1}
    assert isinstance(checked("Exec", body), Irregular)
    assert "extra" not in checked("Exec", body)


@pytest.mark.parametrize("line", [
    b'{"Exec":{"timestamp":1,"pid":2,"ppid":1,"pgid":1,"cmdline":"a","argv":["a"],'
    b'"filename":null,"interpreter":null,"sid":null,"uid":null,"truncated":false},"x":1}\n',
    b'{"Fork":{"timestamp":1,"parent_pid":1,"child_pid":2,"parent_pgid":1,'
    b'"child_pgid":null,"sid":null}}{"Fork":{}}\n',
    b'{"Fork" :{"timestamp":1,"parent_pid":true,"child_pid":2,"parent_pgid":1,'
    b'"child_pgid":null,"sid":null}}\n',
])
def test_a_line_the_one_step_refuses_gets_the_readers_error(tmp_path: Any, line: bytes) -> None:
    """One key, valid JSON, valid fields: the careful path's errors, naming the line."""
    p = tmp_path / "r.ndjson"
    p.write_bytes(line)
    with Source(str(p)) as src, pytest.raises(Exception, match=r"r\.ndjson:1"):
        for _ in Lines(src).parsed():
            pass
