"""Recordings of the original proctrace: both shapes converted into our events."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proctrace_bcc.errors import RecordingError
from proctrace_bcc.events import Exec, ExecFailed, Exit, Fork, SetPGID, SetSID
from proctrace_bcc.read import read_recording

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def rec_of(tmp_path: Path, *records: tuple[str, dict[str, object]]):  # type: ignore[no-untyped-def]
    f = tmp_path / "legacy.ndjson"
    f.write_bytes(b"".join(orjson.dumps({t: b}) + b"\n" for t, b in records))
    return read_recording(f)


def test_seed_doc_reads_as_written() -> None:
    rec = read_recording(INPUTS / "seed-doc.ndjson")
    assert rec.legacy and rec.header is None
    assert len(rec.events) == 13
    first = rec.events[0]
    assert first == Fork(777771839, 415779, 415790, 286785)
    execs = [e for e in rec.events if isinstance(e, Exec)]
    assert execs[-1].cmdline == "sleep 1" and execs[-1].argv is None
    assert all(isinstance(e, Exit) and e.exit_code is None for e in rec.events
               if isinstance(e, Exit))


def test_later_format_pieces_are_assembled() -> None:
    rec = read_recording(INPUTS / "legacy-later.ndjson")
    kinds = [e.KIND for e in rec.events]
    assert "ExecArgs" not in kinds and len(rec.events) == 15
    # The Fork printed after the exec pieces (seq 3) but stamped earlier comes first.
    assert rec.events[0] == Fork(5007751, 4099, 4100, 4098)
    e1, failed, e2 = rec.events[1:4]
    assert isinstance(e1, Exec) and (e1.cmdline, e1.filename, e1.timestamp) == (
        "./demo.sh", "./demo.sh", 5073691)
    assert failed == ExecFailed(6518391, 4100, "/home/u/bin/bash", 0)
    assert isinstance(e2, Exec) and (e2.cmdline, e2.filename) == ("bash ./demo.sh",
                                                                 "/usr/bin/bash")
    curl = next(e for e in rec.events if isinstance(e, Exec) and e.pid == 4101)
    assert curl.argv == ["curl", "-s", "http://example.com:80/#top"]
    assert curl.cmdline == "curl -s http://example.com:80/#top"
    # Failed setpgid/setsid (negative return) are dropped; the target is the caller.
    assert [e for e in rec.events if isinstance(e, SetPGID)] == [
        SetPGID(8900000, 4101, 4100, 0, 4101)]
    assert [e for e in rec.events if isinstance(e, SetSID)] == [
        SetSID(81300000, 4102, 4100, 4102, 4102)]


def test_seed_shape_exec_then_args(tmp_path: Path) -> None:
    rec = rec_of(tmp_path,
                 ("Fork", {"timestamp": 1, "parent_pid": 1, "child_pid": 2, "parent_pgid": 1}),
                 ("Exec", {"timestamp": 5, "pid": 2, "ppid": 1, "pgid": 2, "cmdline": None}),
                 ("ExecArgs", {"timestamp": 5, "pid": 2, "args": "ls"}),
                 ("ExecArgs", {"timestamp": 5, "pid": 2, "args": "ls -la /tmp"}),
                 ("Exec", {"timestamp": 9, "pid": 2, "ppid": 1, "pgid": 2,
                           "cmdline": ["echo", "a b"]}),
                 ("Exec", {"timestamp": 12, "pid": 2, "ppid": 1, "pgid": 2, "cmdline": None}),
                 ("Exit", {"timestamp": 20, "pid": 2, "ppid": 1, "pgid": 2}))
    execs = [e for e in rec.events if isinstance(e, Exec)]
    assert [(e.timestamp, e.cmdline, e.argv) for e in execs] == [
        (5, "ls -la /tmp", None), (9, "echo a b", ["echo", "a b"]), (12, "", None)]


def test_exec_pieces_resume_across_a_fork(tmp_path: Path) -> None:
    rec = rec_of(tmp_path,
                 ("ExecFilename", {"seq": 1, "timestamp": 10, "pid": 7, "filename": "/bin/x"}),
                 ("ExecArgs", {"seq": 2, "timestamp": 10, "pid": 7, "args": ["x", "-v"]}),
                 ("Fork", {"seq": 3, "timestamp": 8, "parent_pid": 6, "child_pid": 7,
                           "parent_pgid": 5}),
                 ("Exec", {"seq": 4, "timestamp": 10, "pid": 7, "ppid": 6, "pgid": 7}),
                 ("ExecFilename", {"seq": 5, "timestamp": 30, "pid": 7, "filename": "/bin/y"}),
                 ("BadExec", {"seq": 6, "timestamp": 31, "pid": 7}),
                 ("BadExec", {"seq": 7, "timestamp": 32, "pid": 7}))
    assert rec.events == [
        Fork(8, 6, 7, 5),
        Exec(10, 7, 6, 7, "x -v", argv=["x", "-v"], filename="/bin/x"),
        ExecFailed(31, 7, "/bin/y", 0),
        ExecFailed(32, 7, "", 0),
    ]


def test_seq_order_wins_over_file_order(tmp_path: Path) -> None:
    rec = rec_of(tmp_path,
                 ("Exec", {"seq": 2, "timestamp": 10, "pid": 7, "ppid": 6, "pgid": 7}),
                 ("ExecArgs", {"seq": 1, "timestamp": 10, "pid": 7, "args": "true"}),
                 ("ExecFilename", {"seq": 0, "timestamp": 10, "pid": 7,
                                   "filename": "/bin/true"}))
    assert rec.events == [Exec(10, 7, 6, 7, "true", filename="/bin/true")]


@pytest.mark.parametrize(("record", "message"), [
    (("ExecFull", {"seq": 1, "timestamp": 1, "pid": 2, "ppid": 1, "pgid": 2,
                   "filename": "/x", "args": 5}), "args must be a string or a list"),
    (("BadExec", {"seq": 1, "timestamp": "x", "pid": 2}), "BadExec.timestamp must be an int"),
    (("ExecArgs", {"seq": 1, "timestamp": 1}), "ExecArgs: missing field 'pid'"),
    (("Fork", [1, 2]), "Fork: body must be an object"),
    (("ExecFilename", {"seq": 1, "timestamp": 1, "pid": 2, "filename": None}),
     "ExecFilename.filename must be a string"),
    # what converts but breaks our schema: the line of the record it came from
    (("Exec", {"timestamp": 2, "pid": 2, "ppid": 1, "pgid": -5, "cmdline": "a b"}),
     r"Exec.pgid out of range \[0, 2147483647\], got -5"),
    (("Exit", {"timestamp": -3, "pid": 2, "ppid": 1, "pgid": 1}), "Exit.timestamp out of range"),
    # an exec still waiting for its ExecArgs at the end of the file
    (("Exec", {"timestamp": 2, "pid": 2, "ppid": -1, "pgid": 2, "cmdline": None}),
     "Exec.ppid out of range"),
])
def test_bad_legacy_records_name_the_line(tmp_path: Path, record: tuple[str, object],
                                          message: str) -> None:
    f = tmp_path / "bad.ndjson"
    good = {"Fork": {"timestamp": 0, "parent_pid": 1, "child_pid": 2, "parent_pgid": 1}}
    f.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps({record[0]: record[1]}) + b"\n")
    with pytest.raises(RecordingError, match=f"{f}:2: .*{message}"):
        read_recording(f)


def test_our_events_without_header_keep_their_fields(tmp_path: Path) -> None:
    """`analyze -d sequential` output read back: ours, minus the header."""
    from proctrace_bcc.analyze import analyze

    out = tmp_path / "seq.ndjson"
    analyze(str(INPUTS / "ours-argv.ndjson"), out, "sequential", None)
    back = read_recording(out)
    orig = read_recording(INPUTS / "ours-argv.ndjson")
    assert back.legacy
    assert back.events == orig.events
