"""No recording can put a control or bidi character on a terminal (issue 13 item 4), and
argv reads back unambiguously (issue 17 item 3).

A recording whose argv, file names, descriptor paths, End.reason and header command hold
every C0/C1 control, DEL, every bidi override/isolate/mark and invalid UTF-8 is rendered
in every mode: the text modes must hold none of those characters raw; the JSON modes
(and the HTML report's data) stay valid JSON holding them only as escapes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from proctrace_bcc import analyze
from proctrace_bcc.events import (
    End,
    Event,
    Exec,
    ExecFailed,
    Exit,
    FdInfo,
    FdSnapshot,
    Fork,
    Header,
)
from proctrace_bcc.render import json_safe, oneline, shell_argv, shell_word
from proctrace_bcc.render.registry import MODES
from proctrace_bcc.writer import RecordingWriter

ROOT = Path(__file__).resolve().parents[2]
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
EVIL = "".join(chr(c) for c in [*range(32), 127, *range(0x80, 0xA0)]) + BIDI + "\u2028\u2029"
BAD_BYTES = "\udcff\udce9"  # invalid UTF-8 (surrogateescape)
# What must never reach a terminal raw (the JSON text may hold them only escaped).
UNSAFE = re.compile(f"[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f{BIDI}\u2028\u2029\udc80-\udcff]")
JSON_MODES = ("sequential", "chrome-trace")
# Every other mode but html is read on a terminal (by-process: titles and JSON lines).
TEXT_MODES = tuple(m for m in MODES if m not in JSON_MODES and m != "html")


def _recording(path: Path) -> Path:
    argv = ["/bin/e" + EVIL, EVIL, "x" + BAD_BYTES, "a\nb", "a\\nb", "two words", ""]
    fds = [FdInfo(0, "file", 1, 2, "/dev/" + EVIL), FdInfo(1, "pipe", 3, 4, "pipe:[4]"),
           FdInfo(3, "pipe", 3, 5, "pipe:[5]")]
    evs: list[Event] = [
        Fork(0, 50, 100, 100, 100, 1),
        Exec.from_argv(1_000, 100, 50, 100, argv, filename="/bin/e" + EVIL, fds=fds),
        Fork(2_000, 100, 101, 100, 100, 1),
        ExecFailed(3_000, 101, "/nope/" + EVIL, 2),
        Exec.from_argv(4_000, 101, 100, 100, [EVIL + BAD_BYTES], filename="/" + EVIL, fds=fds),
        FdSnapshot(9_000, 101, fds),
        Exit(8_000, 100, 50, 100, exit_code=1),
        End(10_000, "\x1b]0;pwned\x07" + EVIL, [101], 1, 0),
    ]
    w = RecordingWriter(path)
    w.write_header(Header(version="0.1.0", backend="bcc", kernel="6.18", hostname="h" + EVIL,
                          command=argv, root_pid=100, start_time="2026-01-01T00:00:00Z",
                          options={"fds": True}))
    w.write_many(evs)
    w.close()
    return path


def _render(tmp_path: Path, mode: str) -> str:
    out = tmp_path / f"out.{mode}"
    analyze.analyze(str(_recording(tmp_path / "evil.ndjson")), out, mode, None)
    return out.read_bytes().decode("utf-8", "surrogateescape")


def test_text_modes_show_no_control_or_bidi_character(tmp_path: Path) -> None:
    for mode in TEXT_MODES:
        text = _render(tmp_path, mode)
        found = sorted({f"U+{ord(c):04X}" for c in UNSAFE.findall(text)})
        assert not found, (mode, found)


def test_json_modes_stay_valid_json_with_escapes_only(tmp_path: Path) -> None:
    for mode in JSON_MODES:
        text = _render(tmp_path, mode)
        assert not UNSAFE.findall(text), mode
        for line in text.splitlines() if mode == "sequential" else [text]:
            orjson.loads(line)
        assert "\\u009b" in text and "\\u202e" in text, mode
    seq = _render(tmp_path, "sequential").splitlines()
    exec_ = orjson.loads(seq[1])["Exec"]
    assert exec_["argv"][1] == EVIL  # the same value, only written escaped


def test_html_data_holds_no_raw_control_or_bidi_character(tmp_path: Path) -> None:
    page = _render(tmp_path, "html")
    assert not UNSAFE.findall(page)
    assert "\\u202e" in page


def test_the_cli_on_a_terminal_like_output(tmp_path: Path) -> None:
    """Through the real entry point, to stdout, every text mode."""
    f = _recording(tmp_path / "evil.ndjson")
    for mode in (*TEXT_MODES, "sequential"):
        p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(f),
                            "-d", mode], capture_output=True, cwd=ROOT, check=False)
        assert p.returncode == 0, p.stderr
        text = (p.stdout + p.stderr).decode("utf-8", "surrogateescape")
        assert not UNSAFE.findall(text), mode


def test_oneline_makes_every_unsafe_character_visible() -> None:
    shown = oneline(EVIL + BAD_BYTES)
    assert not UNSAFE.findall(shown)
    assert shown.startswith("\\x00\\x01") and "\\e" in shown and "\\x9b" in shown
    assert "\\u202e" in shown and shown.endswith("\\xff\\xe9")


def test_json_safe_escapes_del_c1_and_bidi_only() -> None:
    raw = orjson.dumps({"a": EVIL + "é€"})
    safe = json_safe(raw)
    assert orjson.loads(safe) == orjson.loads(raw)
    assert not UNSAFE.findall(safe.decode())
    assert "é€".encode() in safe


def test_argv_is_shell_quoted_so_it_reads_back() -> None:
    """Issue 17 item 3: record -- /bin/echo "$(printf 'a\\nb')" 'a\\nb' 'two words' ''."""
    argv = ["/bin/echo", "a\nb", "a\\nb", "two words", "", "it's", "x" + BAD_BYTES, "\u202e"]
    line = shell_argv(argv)
    assert line == ("/bin/echo $'a\\nb' 'a\\nb' 'two words' '' 'it'\\''s' $'x\\xff\\xe9' "
                    "$'\\u202e'")
    # bash reads it back to exactly the same argv (bytes included)
    script = f"for a in {line}; do printf '%s\\0' \"$a\"; done"
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [a.encode("utf-8", "surrogateescape") for a in argv]


@pytest.mark.parametrize("argv", [
    [], ["ls"], ["ls", "-l", "/tmp"], ["", "x"], ["x", ""], ["a", "", "b"], ["two words"],
    ["a  b"], [" a"], ["a "], ["gcc", "-O2", "a.c"], ["a", "b\tc"], ["\u202e"], ["é"],
    ["--x=1,2:3@4%5+6"], ["a", "'"], ["echo", "$HOME", "a#b", "x'y", "", "ok"], ["é", "a b"],
])
def test_shell_argv_fast_path_is_shell_word(argv: list[str]) -> None:
    """shell_argv takes a whole plain command line in one match: the same as quoting
    each word (shell_word)."""
    assert shell_argv(argv) == " ".join(shell_word(a) for a in argv)
