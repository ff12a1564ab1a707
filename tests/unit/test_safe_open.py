"""The rules for files we write (issue 13, items 1, 2, 3 and 8), without root: safe_open,
the writer's failures, the Header's byte-exact strings, the sudo ids, `analyze -o`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from proctrace_bcc import safe_open
from proctrace_bcc.child import Invoker
from proctrace_bcc.codec import dumps_header, header_from_obj
from proctrace_bcc.errors import RecorderError
from proctrace_bcc.events import End, Event, Exec, Fork, Header, StopReason, from_bytes
from proctrace_bcc.read import read_recording
from proctrace_bcc.writer import RecordingWriter
from tests.support import REPO


def _forks(n: int) -> list[Event]:
    return [Fork(i, 1, 1000 + i, 1) for i in range(n)]


def test_descriptors_named_by_a_path_are_used_as_given() -> None:
    assert [safe_open.given_fd(p) for p in (
        "-", "/dev/stdout", "/dev/stderr", "/dev/fd/7", "/proc/self/fd/3", "/tmp/x",
        "/dev/fd/x")] == [1, 1, 2, 7, 3, None, None]


def test_a_final_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious\n")
    link = tmp_path / "out.ndjson"
    link.symlink_to(target)
    with pytest.raises(safe_open.Unsafe, match="symbolic link"):
        safe_open.open_stream(str(link))
    with pytest.raises(safe_open.Unsafe, match="symbolic link"):
        safe_open.replaceable(link)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(safe_open.Unsafe, match="symbolic link"):
        safe_open.open_stream(str(dangling))
    assert target.read_text() == "precious\n" and not (tmp_path / "nowhere").exists()


def test_an_own_file_is_truncated_a_hard_linked_one_is_not(tmp_path: Path) -> None:
    f = tmp_path / "r.ndjson"
    f.write_text("old content\n")
    o = safe_open.open_stream(str(f))
    assert not o.created and f.read_text() == ""
    os.close(o.fd)
    o.close_dir()
    f.write_text("old content\n")
    os.link(f, tmp_path / "other-name")
    with pytest.raises(safe_open.Unsafe, match="hard links"):
        safe_open.open_stream(str(f))
    assert f.read_text() == "old content\n"


def test_a_created_file_is_removed_by_name_only_while_it_is_ours(tmp_path: Path) -> None:
    f = tmp_path / "new.ndjson"
    o = safe_open.open_stream(str(f))
    assert o.created and f.exists()
    o.remove()
    assert not f.exists()
    os.close(o.fd)
    o.close_dir()
    o = safe_open.open_stream(str(f))
    f.unlink()
    f.write_text("someone else's\n")  # the name now is another file: left alone
    o.remove()
    assert f.read_text() == "someone else's\n"
    os.close(o.fd)
    o.close_dir()


def test_a_fifo_with_no_reader_is_waited_for_then_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr(safe_open, "FIFO_WAIT_S", 0.2)
    said: list[str] = []
    with pytest.raises(safe_open.Unsafe, match="FIFO with no reader"):
        safe_open.open_stream(str(fifo), said.append)
    assert said and "waiting" in said[0]
    assert not safe_open.replaceable(fifo)  # a stream: written as it is, never replaced
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    monkeypatch.setattr(safe_open, "FIFO_WAIT_S", 30.0)
    o = safe_open.open_stream(str(fifo))
    os.write(o.fd, b"line\n")
    os.close(o.fd)
    o.close_dir()
    reader.join()
    assert got == [b"line\n"] and fifo.exists()


def test_a_directory_and_a_missing_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(safe_open.Unsafe, match="directory"):
        safe_open.replaceable(tmp_path)
    with pytest.raises(OSError):
        safe_open.open_stream(str(tmp_path / "no" / "such"))
    with pytest.raises(safe_open.Unsafe, match="cannot create a file in"):
        safe_open.temp_beside(tmp_path / "no" / "such")


def test_header_strings_round_trip_every_byte() -> None:
    odd = from_bytes(b"x\xe9\xff")
    h = Header(command=["bash", "-c", odd], hostname=from_bytes(b"h\x80"),
               options={"env": [odd]})
    body = orjson.loads(dumps_header(h))["Header"]
    assert body["command"][2] == {"b64": "eOn/"}
    back = header_from_obj(body)
    assert back.command == h.command and back.hostname == h.hostname


def test_a_recording_with_a_non_utf8_command_reads(tmp_path: Path) -> None:
    f = tmp_path / "r.ndjson"
    w = RecordingWriter(f)
    w.write_header(Header(command=["x", from_bytes(b"\xe9")], root_pid=10))
    w.write(Exec.from_argv(1, 10, 1, 10, ["x", from_bytes(b"\xe9")]))
    w.write(End(2, StopReason.EXITED, [], 0))
    w.close()
    rec = read_recording(f)
    assert rec.header is not None and rec.header.command == ["x", from_bytes(b"\xe9")]


def test_a_broken_pipe_is_counted_not_raised() -> None:
    r, wfd = os.pipe()
    w = RecordingWriter(wfd, "pipe", opened=False)
    w.write_header(Header())
    os.close(r)
    w.write_many(_forks(3))
    w.flush()
    w.write_many(_forks(2))
    w.flush()
    assert isinstance(w.failed, BrokenPipeError) and w.unwritten == 5
    assert not w.write_last(End(9, StopReason.WRITE_ERROR, lost=5))
    w.close()


def test_dev_full_is_counted_not_raised() -> None:
    w = RecordingWriter(os.open("/dev/full", os.O_WRONLY), "/dev/full", opened=False)
    w.write_header(Header())
    w.write_many(_forks(4))
    w.flush()
    assert w.failed is not None and w.failed.strerror and w.unwritten == 4
    w.close()


_FULL = """
import os, resource, signal, sys
from proctrace_bcc.events import End, Fork, Header, StopReason
from proctrace_bcc.writer import RecordingWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
w = RecordingWriter(sys.argv[1])
w.write_header(Header())
for b in range(20):
    w.write_many([Fork(b * 10 + i, 1, 1000 + i, 1) for i in range(10)])
    w.flush()
assert w.failed is not None and w.unwritten > 0, (w.failed, w.unwritten)
print(w.events_written, w.unwritten, w.write_last(End(999, StopReason.WRITE_ERROR,
      lost=w.unwritten)))
"""


def test_a_full_file_is_cut_back_to_its_last_complete_line(tmp_path: Path) -> None:
    """EFBIG past RLIMIT_FSIZE stands in for ENOSPC (the kernel test fills a tmpfs)."""
    f = tmp_path / "r.ndjson"
    p = subprocess.run([sys.executable, "-c", _FULL, str(f)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
    written, unwritten, kept = p.stdout.split()
    assert int(written) + int(unwritten) == 200
    rec = read_recording(f)  # valid NDJSON: no half line
    forks = [e for e in rec.events if isinstance(e, Fork)]
    assert len(forks) == int(written)
    if kept == "True":
        assert rec.events[-1] == End(999, StopReason.WRITE_ERROR, lost=int(unwritten))
    assert f.stat().st_size <= 4096


def test_non_numeric_sudo_ids_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    for name, value in (("SUDO_UID", "12x"), ("SUDO_UID", "-1"), ("SUDO_GID", "staff")):
        monkeypatch.setenv("SUDO_UID", "0")
        monkeypatch.setenv(name, value)
        with pytest.raises(RecorderError, match=f"{name}=.* is not a numeric id"):
            Invoker.from_env(False)
        monkeypatch.delenv("SUDO_GID", raising=False)


def test_cmd_env_is_the_environment_before_the_backends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    monkeypatch.delenv("SUDO_UID", raising=False)
    for as_root in (False, True):
        inv = Invoker.from_env(as_root)
        monkeypatch.setenv("BCC_KERNEL_SOURCE", "/somewhere")  # what a backend does later
        assert inv.env is not None and "BCC_KERNEL_SOURCE" not in inv.env
        monkeypatch.delenv("BCC_KERNEL_SOURCE")


def _cli(*args: str, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proctrace_bcc", *args], text=True,
                          stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def _recording(tmp_path: Path) -> Path:
    f = tmp_path / "r.ndjson"
    w = RecordingWriter(f)
    w.write_header(Header(command=["true"], root_pid=10))
    w.write(Exec.from_argv(1, 10, 1, 10, ["true"]))
    w.write(End(2, StopReason.EXITED, [], 0))
    w.close()
    return f


def test_analyze_o_refuses_a_symlink_and_says_why_proc_is_unwritable(tmp_path: Path) -> None:
    rec = _recording(tmp_path)
    target = tmp_path / "target"
    target.write_text("precious\n")
    link = tmp_path / "out.txt"
    link.symlink_to(target)
    for sub in ("analyze", "ingest"):
        extra = ["-p", "10"] if sub == "ingest" else []
        p = _cli(sub, "-i", str(rec), *extra, "-o", str(link))
        assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
        assert "symbolic link" in p.stderr, p.stderr
    assert target.read_text() == "precious\n" and link.is_symlink()
    p = _cli("analyze", "-i", str(rec), "-o", "/proc/version")
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert ("cannot create a file in /proc" in p.stderr
            or "belongs to uid 0" in p.stderr), p.stderr
    p = _cli("analyze", "-i", str(rec), "-o", "/dev/stdout")
    assert p.returncode == 0 and "true" in p.stdout, p.stderr


def test_a_closed_stderr_is_no_traceback(tmp_path: Path) -> None:
    rec = _recording(tmp_path)
    p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(rec),
                        "-o", str(tmp_path / "out.txt")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONPATH=str(REPO)),
                       preexec_fn=lambda: os.close(2))
    assert p.returncode == 0 and "true" in (tmp_path / "out.txt").read_text()
