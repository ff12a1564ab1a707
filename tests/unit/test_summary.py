"""`analyze -d summary`: golden outputs, escaping, and a bounded length.

Expected outputs are tests/golden/summary/<case>.md.  To regenerate them after an
intended change of output:

    PROCTRACE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_summary.py

and review the diff (git diff tests/golden/summary) before committing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from proctrace_bcc.analyze import analyze
from proctrace_bcc.events import End, Event, Exec, Exit, FdSnapshot, Fork, Header, Lost
from proctrace_bcc.read import Recording, read_recording
from proctrace_bcc.render import summary
from proctrace_bcc.render.registry import RENDERERS, TreeRenderer
from proctrace_bcc.tree import build_tree
from proctrace_bcc.writer import RecordingWriter
from tests.unit.test_fds import STD, pipe_r, pipe_w, snap
from tests.unit.test_hang import _bats

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "golden" / "summary"
UPDATE = os.environ.get("PROCTRACE_UPDATE_GOLDEN") == "1"
MS = 1_000_000
CASES = {
    "ours-ci": TESTS / "golden" / "inputs" / "ours-ci.ndjson",
    "sample": TESTS.parent / "proctrace_bcc" / "data" / "sample.ndjson",
    "bats-group-term": TESTS / "fixtures" / "leak-group-term.ndjson",
    "bats-sigkill": TESTS / "fixtures" / "leak-sigkill.ndjson",
    "stdout-timeout": TESTS / "fixtures" / "leak-stdout-timeout.ndjson",
    "bats-timeout": TESTS / "fixtures" / "bats-leak-fds.ndjson",
    # record --fds --timeout 6 on the hung bats: with its hang snapshot (ProcState events)
    "bats-hang-snapshot": TESTS / "fixtures" / "leak-hang-timeout.ndjson",
}


def _compare(got: str, expected: Path) -> None:
    if UPDATE:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(got)
        return
    assert expected.exists(), f"{expected} missing: run with PROCTRACE_UPDATE_GOLDEN=1"
    assert got == expected.read_text()


def test_summary_is_a_registered_mode_with_events() -> None:
    r = RENDERERS["summary"]
    assert isinstance(r, TreeRenderer) and r.events


@pytest.mark.parametrize("case", list(CASES))
def test_golden(tmp_path: Path, case: str) -> None:
    out = tmp_path / "summary.md"
    analyze(str(CASES[case]), out, "summary", None)
    _compare(out.read_text(), GOLDEN / f"{case}.md")


def test_golden_hang_snapshot() -> None:
    """A snapshot with bats blocked on the pipe and python3 its only writer."""
    tree, states = _bats()
    rec = Recording("hang.ndjson", None, cast(list[Event], states))
    _compare("".join(summary.render(rec, tree)), GOLDEN / "hang-snapshot.md")


def test_everything_from_the_recording_is_escaped(tmp_path: Path) -> None:
    argv = ["./run", "<script>alert(1)</script>", "*bold* _it_ [x](http://e) | `tick`",
            "\x1b[31mred\n# heading"]
    evs: list[Event] = [
        Fork(0, 50, 100, 100, 100, 1),
        Exec.from_argv(MS, 100, 50, 100, argv, filename="/bin/run", fds=None),
        Exit(2 * MS, 100, 50, 100, exit_code=3),
        End(3 * MS, "exited", [], 3, 0),
    ]
    path = tmp_path / "rec.ndjson"
    w = RecordingWriter(path)
    w.write_header(Header(version="0.1.0", backend="bcc", kernel="6.18", hostname="h",
                          command=argv, root_pid=100, start_time="2026-01-01T00:00:00Z"))
    w.write_many(evs)
    w.close()
    rec = read_recording(path)
    text = "".join(summary.render(rec, build_tree(rec.events, rec.header)))
    assert "\x1b" not in text and "\n# heading" not in text
    # Outside code spans (where nothing is interpreted) no HTML tag and no Markdown.
    prose = "".join(text.split("``")[::2])
    assert "<" not in prose and "[x](" not in prose
    # argv in code spans (a fence longer than the backticks inside), shell-quoted
    assert "`` ./run '<script>alert(1)</script>' '*bold* _it_ [x](http://e) | `tick`' " in text
    assert "exit status 3" in text


def _big(n: int) -> list[Event]:
    """n processes: a runner starting shells, each running ten commands; a third fail,
    with long arguments full of Markdown; a leftover keeps the runner's pipe; losses."""
    evs: list[Event] = [Fork(0, 50, 1, 1, 1, 1),
                        Exec.from_argv(MS, 1, 50, 1, ["runner"], filename="/bin/runner",
                                       fds=[*STD, pipe_w(5, 70)])]
    t = 2 * MS
    pid = 2
    shells = -(-n // 11)  # 11 processes each: at least n in all
    for _ in range(shells):
        sh = pid
        pid += 1
        evs.append(Fork(t, 1, sh, 1, 1, 1))
        evs.append(Exec.from_argv(t + 1, sh, 1, 1, ["sh", "-c", "x"], filename="/bin/sh",
                                  fds=[*STD, pipe_w(5, 70)]))
        for j in range(10):
            c = pid
            pid += 1
            evs.append(Fork(t + 2, sh, c, 1, 1, 1))
            evs.append(Exec.from_argv(t + 3, c, sh, 1, ["test-" + "*_[x]|" * 40, str(j)],
                                      filename="/bin/t", fds=list(STD)))
            evs.append(Exit(t + 4, c, sh, 1, exit_code=j % 3))
            t += 10
        evs.append(Exit(t + 5, sh, 1, 1, exit_code=1))
        t += 10
    evs.append(Fork(t, 1, pid, 1, 1, 1))
    evs.append(Exec.from_argv(t + 1, pid, 1, 1, ["reader"], filename="/bin/reader",
                              fds=[pipe_r(0, 70), *STD[1:]]))
    evs.append(Lost(t + 2, 17))
    end = t + 10_000 * MS
    evs.append(FdSnapshot(end, pid, snap([pipe_r(0, 70), *STD[1:]])))
    evs.append(End(end + 1, "timeout", [1, pid], None, 17))
    return evs


def test_summary_of_50000_processes_stays_under_64_kib(tmp_path: Path) -> None:
    evs = _big(50_000)
    path = tmp_path / "big.ndjson"
    w = RecordingWriter(path)
    w.write_header(Header(version="0.1.0", backend="bcc", kernel="6.18", hostname="h",
                          command=["runner"], root_pid=1, start_time="2026-01-01T00:00:00Z"))
    w.write_many(evs)
    w.close()
    out = tmp_path / "summary.md"
    analyze(str(path), out, "summary", None)
    text = out.read_text()
    size = len(text.encode())
    assert size < 64 * 1024, size
    procs = int(text.split("- **Processes:** ", 1)[1].split(" ", 1)[0])
    assert procs >= 50_000
    assert f"### Failed processes (first {summary.FAILED_MAX} of " in text
    assert "- **Lost events:** 17" in text
