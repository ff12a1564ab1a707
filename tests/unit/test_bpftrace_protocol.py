"""The line protocol declared in protocol.py against the printf formats of proctrace.bt:
every printf's tag and fields match its declared record, every record has a printf."""

from __future__ import annotations

import re

import pytest

from proctrace_bcc.backends.bpftrace.protocol import (
    CHUNK,
    RECORDS,
    Argv0Line,
    HandshakeLine,
    decode,
)
from proctrace_bcc.backends.bpftrace.script import script_path

PRINTF = re.compile(r'printf\("((\w) ?([^"]*?))\\n"')
CONVERSION = {"%d": int, "%lu": int, "%rx": bytes}


def printfs() -> list[tuple[str, str, list[type]]]:
    """(format, tag, field types) of every printf in the template."""
    out = []
    for m in PRINTF.finditer(script_path().read_text()):
        convs = m.group(3).split(" ") if m.group(3) else []
        assert all(c in CONVERSION for c in convs), m.group(1)
        out.append((m.group(1), m.group(2), [CONVERSION[c] for c in convs]))
    return out


def test_every_printf_of_the_template_is_seen() -> None:
    assert len(printfs()) == script_path().read_text().count("printf(")


@pytest.mark.parametrize("fmt,tag,types", printfs())
def test_every_printf_is_a_declared_record(fmt: str, tag: str, types: list[type]) -> None:
    assert tag in RECORDS, fmt
    assert types == [t for _, t in RECORDS[tag].fields], fmt


def test_every_declared_record_has_a_printf() -> None:
    assert set(RECORDS) == {tag for _, tag, _ in printfs()}


def test_decode_by_the_declaration() -> None:
    hx = "\\x2f\\x62\\x00"
    assert decode(f"Z 5 7 1 {hx}") == Argv0Line(5, 7, 1, b"/b\0")
    assert decode("Z 5 7 0") == Argv0Line(5, 7, 0, b"")
    assert decode("H 0 4026531836 5738") == HandshakeLine(0, 4026531836, 5738, 0, 0)
    assert decode("H 0 1 5738 3 1") == HandshakeLine(0, 1, 5738, 3, 1)
    for bad in ("H 0 1", "H 0 1 2 3 4 5", "F 1 2 3 4 x", f"X 1 2 3 {hx} 4"):
        with pytest.raises(ValueError):
            decode(bad)
    with pytest.raises(KeyError):
        decode("Q 1")
    assert CHUNK == 200  # the script's str()/buf() chunk (200 bytes, written out there)
