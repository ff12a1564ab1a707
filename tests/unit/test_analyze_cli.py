"""`analyze`, `render` and `ingest` through the real command line (a subprocess).

Bad input must give one line on stderr naming the file (and the line when there is
one), a non-zero exit status and no traceback; a truncated last line is a warning and
the rest is analyzed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from proctrace_bcc.events import Exec, Exit, Fork, Header, from_bytes
from proctrace_bcc.writer import RecordingWriter
from tests.support import read_to_eof

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "tests" / "golden" / "inputs"


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PROCTRACE_UPDATE_GOLDEN", None)
    return subprocess.run([sys.executable, "-m", "proctrace_bcc", *args], input=stdin,
                          capture_output=True, timeout=60, env=env, check=False)


def one_error(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode()
    assert p.returncode != 0, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("proctrace-bcc: error: "), err
    return lines[0]


def good_recording(path: Path, extra: bytes = b"") -> Path:
    w = RecordingWriter(path)
    w.write_header(Header(version="t", backend="bcc", command=["sh"], root_pid=10,
                          start_time="2025-01-01T00:00:00+00:00"))
    w.write_many([
        Fork(0, 9, 10, 9, 9, 9),
        Exec.from_argv(100, 10, 9, 9, ["sh", "-c", "true"]),
        Fork(200, 10, 11, 9, 9, 9),
        Exit(300, 11, 10, 9, 0, None),
        Exit(400, 10, 9, 9, 3, None),
    ])
    w.close()
    if extra:
        with open(path, "ab") as f:
            f.write(extra)
    return path


def test_missing_file(tmp_path: Path) -> None:
    p = cli("analyze", "-i", str(tmp_path / "nope.ndjson"))
    assert one_error(p) == f"proctrace-bcc: error: {tmp_path / 'nope.ndjson'}: no such file"
    assert p.returncode == 3


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in one_error(cli("analyze", "-i", str(tmp_path)))


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.ndjson"
    f.write_bytes(b"")
    assert one_error(cli("analyze", "-i", str(f))).endswith(f"{f}: empty recording (no events)")
    f.write_bytes(b"\n\n  \n")
    assert "empty recording" in one_error(cli("analyze", "-i", str(f)))


def test_truncated_last_line_is_a_warning(tmp_path: Path) -> None:
    f = good_recording(tmp_path / "t.ndjson", b'{"Exit":{"timestamp":500,"pid":1')
    for mode in ("tree", "sequential", "by-process", "mermaid"):
        p = cli("analyze", "-i", str(f), "-d", mode)
        assert p.returncode == 0, p.stderr
        err = p.stderr.decode().splitlines()
        assert len(err) == 1 and err[0].startswith(f"proctrace-bcc: warning: {f}:7: "
                                                   "truncated last line ignored"), err
        assert b"sh -c true" in p.stdout
    p = cli("analyze", "-i", str(f), "-d", "sequential")
    assert len(p.stdout.splitlines()) == 5  # every complete event, nothing else


def test_non_json_line(tmp_path: Path) -> None:
    f = good_recording(tmp_path / "bad.ndjson")
    lines = f.read_bytes().splitlines(keepends=True)
    lines.insert(3, b"this is not json\n")
    f.write_bytes(b"".join(lines))
    msg = one_error(cli("analyze", "-i", str(f), "-d", "sequential"))
    assert msg.startswith(f"proctrace-bcc: error: {f}:4: not valid JSON")
    assert cli("analyze", "-i", str(f)).returncode == 3


def test_non_json_line_in_a_legacy_file(tmp_path: Path) -> None:
    f = tmp_path / "legacy.ndjson"
    f.write_bytes((INPUTS / "seed-doc.ndjson").read_bytes() + b"{oops}\n" + b'{"Exit":{}}\n')
    assert one_error(cli("analyze", "-i", str(f))).startswith(
        f"proctrace-bcc: error: {f}:14: not valid JSON")


def test_unknown_event_kind(tmp_path: Path) -> None:
    f = good_recording(tmp_path / "k.ndjson")
    lines = f.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"Frobnicate":{"timestamp":50}}\n')
    f.write_bytes(b"".join(lines))
    assert one_error(cli("analyze", "-i", str(f))) == (
        f"proctrace-bcc: error: {f}:3: unknown event kind 'Frobnicate'")
    legacy = tmp_path / "l.ndjson"
    legacy.write_bytes(b'{"Fork":{"timestamp":1,"parent_pid":1,"child_pid":2,"parent_pgid":1}}\n'
                       b'{"Spawn":{"timestamp":2}}\n')
    assert one_error(cli("analyze", "-i", str(legacy))) == (
        f"proctrace-bcc: error: {legacy}:2: unknown event kind 'Spawn'")


def test_malformed_event(tmp_path: Path) -> None:
    f = good_recording(tmp_path / "m.ndjson")
    lines = f.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"Exec":{"timestamp":100,"ppid":9,"pgid":9,"cmdline":"sh"}}\n'
    f.write_bytes(b"".join(lines))
    assert one_error(cli("analyze", "-i", str(f))) == (
        f"proctrace-bcc: error: {f}:3: Exec: missing 1 required positional argument: 'pid'")
    lines[2] = b'{"Exit":{"timestamp":"soon","pid":10,"ppid":9,"pgid":9}}\n'
    f.write_bytes(b"".join(lines))
    assert one_error(cli("analyze", "-i", str(f))).startswith(
        f"proctrace-bcc: error: {f}:3: Exit.timestamp must be an integer")
    lines[2] = b'[1, 2]\n'
    f.write_bytes(b"".join(lines))
    assert ":3: expected an object with exactly one key" in one_error(cli("analyze", "-i", str(f)))


def test_no_root(tmp_path: Path) -> None:
    f = tmp_path / "h.ndjson"
    h = orjson.dumps({"Header": {"format": "proctrace-bcc", "schema": 1, "root_pid": 77}})
    f.write_bytes(h + b"\n")
    assert one_error(cli("analyze", "-i", str(f))) == (
        f"proctrace-bcc: error: {f}:1: recording has a header but no events")
    f.write_bytes(h + b"\n" + orjson.dumps({"Fork": {
        "timestamp": 1, "parent_pid": 1, "child_pid": 2, "parent_pgid": 1}}) + b"\n")
    for mode in ("by-process", "sequential", "tree"):
        assert one_error(cli("analyze", "-i", str(f), "-d", mode)) == (
            f"proctrace-bcc: error: {f}:1: root pid 77 does not appear in the recording "
            "(use -p to choose another root)")
    p = cli("analyze", "-i", str(f), "-p", "2")
    assert p.returncode == 0 and b"2 (fork)" in p.stdout
    assert one_error(cli("analyze", "-i", str(f), "-p", "5")) == (
        f"proctrace-bcc: error: {f}: pid 5 does not appear in the recording")
    only_lost = tmp_path / "lost.ndjson"
    only_lost.write_bytes(b'{"Lost":{"timestamp":1,"count":3}}\n')
    assert "no process events (no root)" in one_error(cli("analyze", "-i", str(only_lost)))


def test_bad_header(tmp_path: Path) -> None:
    f = tmp_path / "s.ndjson"
    f.write_bytes(b'{"Header":{"schema":7}}\n')
    assert one_error(cli("analyze", "-i", str(f))) == (
        f"proctrace-bcc: error: {f}:1: unsupported schema 7 (this version reads schema 1)")
    f.write_bytes(b'{"Fork":{"timestamp":1,"parent_pid":1,"child_pid":2,"parent_pgid":1}}\n'
                  b'{"Header":{"schema":1}}\n')
    assert one_error(cli("analyze", "-i", str(f))) == (
        f"proctrace-bcc: error: {f}:2: Header must be the first line")


def test_unknown_mode() -> None:
    p = cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson"), "-d", "gantt")
    assert p.returncode == 2
    assert "unknown display mode 'gantt' (choose from: sequential, by-process, mermaid, tree" \
        in one_error(p)


def test_stdin_and_render_alias(tmp_path: Path) -> None:
    data = (INPUTS / "ours-ci.ndjson").read_bytes()
    p = cli("render", "-i", "-", "-d", "tree", stdin=data)
    assert p.returncode == 0, p.stderr
    assert p.stdout == cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson")).stdout
    bad = data + b"nope\n" + b'{"Lost":{"timestamp":999999999,"count":1}}\n'
    assert one_error(cli("analyze", "-i", "-", stdin=bad)).startswith(
        "proctrace-bcc: error: <stdin>:40: not valid JSON")


def test_output_file_and_unwritable(tmp_path: Path) -> None:
    out = tmp_path / "o.txt"
    p = cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson"), "-o", str(out))
    assert p.returncode == 0 and p.stdout == b"" and out.read_text().startswith("proctrace-bcc")
    # On error the previous output stays as it was: nothing half written.
    before = out.read_bytes()
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"{\n")
    p = cli("analyze", "-i", str(bad), "-o", str(out))
    assert p.returncode == 3 and out.read_bytes() == before
    assert list(tmp_path.glob(".proctrace-*")) == []
    p = cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson"), "-o", str(tmp_path / "no/dir/x"))
    assert "cannot write" in one_error(p)


def test_invalid_utf8_to_stdout(tmp_path: Path) -> None:
    f = tmp_path / "u.ndjson"
    w = RecordingWriter(f)
    w.write_header(Header(root_pid=5))
    w.write_many([Fork(0, 4, 5, 4), Exec.from_argv(1, 5, 4, 4, [from_bytes(b"\xff\xfeab")]),
                  Exit(2, 5, 4, 4, 0)])
    w.close()
    for mode in ("tree", "sequential", "by-process", "mermaid"):
        p = cli("analyze", "-i", str(f), "-d", mode)
        assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr
    assert b"\\xff\\xfeab" in cli("analyze", "-i", str(f), "-d", "tree").stdout
    assert b'{"b64":"//5hYg=="}' in cli("analyze", "-i", str(f), "-d", "sequential").stdout


@pytest.mark.parametrize("args", [("-p", "3000"), ("--root-pid", "3000")])
def test_ingest(tmp_path: Path, args: tuple[str, str]) -> None:
    out = tmp_path / "cut.ndjson"
    p = cli("ingest", "-i", str(INPUTS / "raw-system.ndjson"), *args, "-o", str(out))
    assert p.returncode == 0, p.stderr
    t = cli("analyze", "-i", str(out), "-d", "tree")
    assert t.returncode == 0
    assert t.stdout == cli("analyze", "-i", str(INPUTS / "raw-system.ndjson"), "-p",
                           "3000").stdout


def test_ingest_errors(tmp_path: Path) -> None:
    p = cli("ingest", "-i", str(INPUTS / "raw-system.ndjson"))
    assert "ingest needs -p/--root-pid" in one_error(p)
    p = cli("ingest", "-i", str(INPUTS / "raw-system.ndjson"), "-p", "4242")
    assert one_error(p).endswith("pid 4242 does not appear in the recording")
    assert cli("ingest", "-i", str(tmp_path / "x"), "-p", "1").returncode == 3


def _on_a_terminal(*args: str, env_extra: dict[str, str] | None = None) -> bytes:
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), TERM="xterm")
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    p = subprocess.Popen([sys.executable, "-m", "proctrace_bcc", *args], stdout=slave,
                         stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = read_to_eof(master)
    p.wait(timeout=60)
    os.close(master)
    return out


def test_tree_colours_only_on_a_terminal() -> None:
    path = str(INPUTS / "ours-ci.ndjson")
    tty = _on_a_terminal("analyze", "-i", path)
    assert b"\x1b[31mexit 2 \xe2\x9c\x97\x1b[0m" in tty  # failed: red
    assert b"\x1b[33mnever exited" in tty  # never exited: yellow
    assert b"\x1b[" not in _on_a_terminal("analyze", "-i", path, env_extra={"NO_COLOR": "1"})
    assert b"\x1b[" not in cli("analyze", "-i", path).stdout  # a pipe
