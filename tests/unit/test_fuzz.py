"""Hostile recordings (issue 13 items 4-6): every mode either renders or fails with one line.

Real recordings (tests/fixtures, tests/golden/inputs, the packaged sample) are mutated:
truncated, bytes flipped, a field given each wrong type or a huge number, a field
removed, the Header dropped or repeated, non-UTF-8 bytes, a long line.  Every case runs
every `analyze -d MODE` through analyze.analyze (what the CLI calls; in-process, for
speed): it must return, or raise RecordingError (exit code 3) with a one-line message;
anything else is a bug.  Hostile structure (a deep fork chain, a line past the limit,
a stream of zeros) runs through the real CLI in a subprocess under RLIMIT_AS/RLIMIT_CPU.

Seeded and deterministic: PROCTRACE_FUZZ_CASES (default 240) cases with
PROCTRACE_FUZZ_SEED (default 13); set a larger count for a longer local run.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from proctrace_bcc import analyze
from proctrace_bcc.errors import RecordingError
from proctrace_bcc.render.registry import MODES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("tests/fixtures/*.ndjson"), *ROOT.glob("tests/golden/inputs/*.ndjson"),
                  ROOT / "proctrace_bcc/data/sample.ndjson"])
CASES = int(os.environ.get("PROCTRACE_FUZZ_CASES", "240"))
SEED = int(os.environ.get("PROCTRACE_FUZZ_SEED", "13"))

# Values a field may be given instead of its own.
WRONG: list[Any] = [None, "x", "", -1, 0, 1.5, True, [], {}, [1, "a"], {"b64": "!!"},
                    {"b64": "/w=="}, 2**31, 2**63, 2**64 - 1, 2**64, -(2**63), 10**30,
                    "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e", ["\x1b[31m", None],
                    [{"fd": 1}], {"a": "b"}]


def _lines(src: Path) -> list[bytes]:
    return src.read_bytes().splitlines(keepends=True)


def _retype(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    """One field of one line (Header included) given a wrong value, or removed."""
    i = rng.randrange(len(lines))
    try:
        obj = orjson.loads(lines[i])
    except orjson.JSONDecodeError:
        return lines
    if not isinstance(obj, dict) or len(obj) != 1:
        return lines
    ((tag, body),) = obj.items()
    if not isinstance(body, dict) or not body:
        return lines
    key = rng.choice(sorted(body))
    if rng.random() < 0.15:
        del body[key]
    else:
        body[key] = rng.choice(WRONG)
    lines[i] = json.dumps({tag: body}).encode() + b"\n"  # json: ints past 64 bits too
    return lines


def _truncate(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    data = b"".join(lines)
    return [data[:rng.randrange(len(data) + 1)]]


def _flip(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    data = bytearray(b"".join(lines))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return [bytes(data)]


def _headers(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    if rng.random() < 0.5 or len(lines) < 2:
        return lines[1:]  # no Header: read as the original's format, or refused
    lines.insert(rng.randrange(1, len(lines)), lines[0])
    return lines


def _non_utf8(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    i = rng.randrange(len(lines))
    j = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:j] + rng.choice([b"\xff", b"\xe9", b"\xc2\x9b", b"\xed\xa0\x80"]) + lines[i][j:]
    return lines


def _controls(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    """Every string of one line replaced by one holding terminal controls."""
    i = rng.randrange(len(lines))
    evil = "".join(chr(c) for c in [*range(32), 127, *range(0x80, 0xA0)]) + "\u202e\u2066"
    lines[i] = lines[i].replace(b'"/', orjson.dumps(evil)[:-1] + b"/")
    return lines


def _reorder(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    head, rest = lines[:1], lines[1:]
    rng.shuffle(rest)
    return head + rest


MUTATIONS: list[Callable[[random.Random, list[bytes]], list[bytes]]] = [
    _retype, _retype, _retype, _retype, _truncate, _flip, _headers, _non_utf8, _controls,
    _reorder]


def _case(n: int) -> tuple[str, bytes]:
    rng = random.Random(SEED * 1_000_003 + n)
    src = rng.choice(SOURCES)
    lines = _lines(src)
    names = []
    for _ in range(rng.randint(1, 3)):
        m = rng.choice(MUTATIONS)
        names.append(m.__name__.strip("_"))
        lines = m(rng, lines) or [b"\n"]
    return f"{n}:{src.name}:{'+'.join(names)}", b"".join(lines)


def _run_all_modes(path: Path, out: Path) -> list[str]:
    """Every mode on one file; the one-line errors they gave."""
    errors = []
    for mode in MODES:
        try:
            analyze.analyze(str(path), out, mode, None)
        except RecordingError as exc:
            msg = str(exc)
            assert "\n" not in msg, msg
            assert exc.exit_code == 3
            errors.append(msg)
    return errors


def test_mutated_recordings_render_or_fail_in_one_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    path, out = tmp_path / "case.ndjson", tmp_path / "out"
    failed = 0
    for n in range(CASES):
        name, data = _case(n)
        path.write_bytes(data)
        try:
            failed += bool(_run_all_modes(path, out))
        except Exception as exc:
            raise AssertionError(f"case {name}: {type(exc).__name__}: {exc}") from exc
        capsys.readouterr()  # warnings go to stderr: drop them
    assert 0 < failed < CASES  # the mutations do reach both outcomes


# --- hostile structure, through the real CLI under resource limits -----------------

MEMORY = 1 << 30  # bytes of address space a run may use
CPU = 60  # seconds of CPU a run may use (the kernel stops it: not a timing assertion)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU, CPU))


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "proctrace_bcc", *args], cwd=ROOT,
                          capture_output=True, preexec_fn=_limited, check=False)


def _header(root: int) -> bytes:
    return orjson.dumps({"Header": {"format": "proctrace-bcc", "schema": 1,
                                    "root_pid": root}}) + b"\n"


def _chain(depth: int) -> bytes:
    """pid 2 forks 3, which forks 4, ... `depth` levels, each then execs and exits."""
    out = [_header(2)]
    ts = 1
    for pid in range(2, depth + 2):
        out.append(orjson.dumps({"Fork": {"timestamp": ts, "parent_pid": pid,
                                          "child_pid": pid + 1, "parent_pgid": 2}}) + b"\n")
        out.append(orjson.dumps({"Exec": {"timestamp": ts + 1, "pid": pid + 1, "ppid": pid,
                                          "pgid": 2, "cmdline": "sh -c x",
                                          "argv": ["sh", "-c", "x"]}}) + b"\n")
        ts += 2
    for pid in range(depth + 2, 1, -1):
        out.append(orjson.dumps({"Exit": {"timestamp": ts, "pid": pid, "ppid": pid - 1,
                                          "pgid": 2, "exit_code": 0}}) + b"\n")
        ts += 1
    out.append(orjson.dumps({"End": {"timestamp": ts, "reason": "exited"}}) + b"\n")
    return b"".join(out)


def test_a_deep_chain_renders_in_bounded_output_in_every_mode(tmp_path: Path) -> None:
    depth = 20_000
    f = tmp_path / "deep.ndjson"
    f.write_bytes(_chain(depth))
    for mode in MODES:
        out = tmp_path / f"deep.{mode}"
        p = _cli("analyze", "-i", str(f), "-d", mode, "-o", str(out))
        assert p.returncode == 0, (mode, p.stderr)
        # linear in the processes (was quadratic: 600 MB of indentation for the tree)
        assert out.stat().st_size < 4000 * depth, mode
    text = (tmp_path / "deep.tree").read_text()
    assert "64 levels deep: indentation folded" in text
    assert max(len(line) for line in text.splitlines()) < 400


def test_a_line_past_the_limit_and_a_stream_of_zeros_are_one_line_errors(
        tmp_path: Path) -> None:
    f = tmp_path / "long.ndjson"
    f.write_bytes(_header(2) + b'{"Exec":{"timestamp":1,"pid":2,"ppid":1,"pgid":2,"cmdline":"'
                  + b"a" * (17 << 20) + b'"}}\n')
    for src in (str(f), "/dev/zero"):
        p = _cli("analyze", "-i", src, "-d", "tree")
        assert p.returncode == 3, p.stderr
        err = p.stderr.decode()
        assert err.count("\n") == 1 and "line longer than 16 MiB" in err, err


def test_mistyped_fields_are_one_line_errors_through_the_cli(tmp_path: Path) -> None:
    """The crashes of issue 13 item 5, each named by file and line."""
    base = (ROOT / "tests/golden/inputs/ours-ci.ndjson").read_bytes().splitlines(keepends=True)
    header = orjson.loads(base[0])["Header"]
    cases = {
        "Header.options must be an object": {"Header": {**header, "options": None}},
        "Header.command must be a list of strings": {"Header": {**header, "command": [1]}},
        "Header.start_time must be a string": {"Header": {**header, "start_time": 5}},
    }
    for want, head in cases.items():
        f = tmp_path / "h.ndjson"
        f.write_bytes(orjson.dumps(head) + b"\n" + b"".join(base[1:]))
        p = _cli("analyze", "-i", str(f), "-d", "chrome-trace")
        assert p.returncode == 3
        assert p.stderr.decode() == f"proctrace-bcc: error: {f}:1: {want}, got " + (
            p.stderr.decode().split(", got ", 1)[1]), p.stderr
    events = [
        (b'{"Exec":{"timestamp":1,"pid":2,"ppid":1,"pgid":2,"cmdline":5}}',
         "Exec.cmdline must be a string, got 5"),
        (b'{"FdSnapshot":{"timestamp":1,"pid":2,"fds":null}}',
         "FdSnapshot.fds must be a list of objects, got None"),
        (b'{"Lost":{"timestamp":1,"count":18446744073709551615}}',
         "Lost.count out of range [0, 4294967295], got 18446744073709551615"),
        (b'{"Fork":{"timestamp":1,"parent_pid":18446744073709551615,"child_pid":3,'
         b'"parent_pgid":1}}', "Fork.parent_pid out of range [1, 2147483647]"),
        (b'{"Lost":{"timestamp":1,"count":-7}}', "Lost.count out of range"),
    ]
    for bad, want in events:
        f = tmp_path / "e.ndjson"
        f.write_bytes(base[0] + bad + b"\n" + b"".join(base[1:]))
        p = _cli("analyze", "-i", str(f), "-d", "chrome-trace")
        assert p.returncode == 3
        assert p.stderr.decode().startswith(f"proctrace-bcc: error: {f}:2: {want}"), p.stderr
