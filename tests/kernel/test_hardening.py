"""Issue 13, the recorder's side, on a real kernel: `-o` under sudo and planted symlinks,
non-UTF-8 argv, write failures (ENOSPC, EPIPE, a FIFO with no reader), SIGKILL of the
recorder, and the small ones (closed stderr, bad SUDO_UID, -o /dev/stdout, CMD's env).

"The user behind sudo" is uid 65534 (nobody), given as SUDO_UID/SUDO_GID, as sudo does;
"another user" planting a symlink is the same uid, set with os.setuid in a child.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from proctrace_bcc.events import End, Exec, StopReason, from_bytes
from proctrace_bcc.read import read_recording
from tests.support import scaled

from .conftest import REPO

pytestmark = pytest.mark.kernel
NOBODY = 65534
SUDO = {"SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY), "SUDO_USER": "nobody"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def _record(out: str | Path, cmd: list[str], *extra: str, env: dict[str, str] | None = None,
            timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", str(out), *extra,
            "--", *cmd]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(argv, env=_env(env), stdin=subprocess.DEVNULL,  # type: ignore[call-overload, no-any-return]
                          timeout=scaled(timeout), **kw)


def _errors(p: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [ln for ln in p.stderr.decode(errors="replace").splitlines()
            if ln.startswith("proctrace-bcc: error")]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user can reach (tmp_path is root's, mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix="proctrace-hardening-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _as_nobody(*argv: str) -> None:
    def become() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    subprocess.run(argv, check=True, preexec_fn=become)


@pytest.mark.parametrize("sticky", [True, False])
@pytest.mark.parametrize("sudo", [True, False])
def test_a_planted_symlink_is_not_followed(shared: Path, sticky: bool, sudo: bool) -> None:
    d = shared / "drop"
    d.mkdir()
    d.chmod(0o1777 if sticky else 0o777)
    target = shared / "root-file"
    target.write_text("root's\n")
    link = d / "run.ndjson"
    _as_nobody("ln", "-s", str(target), str(link))
    p = _record(link, ["true"], env=SUDO if sudo else None)
    assert p.returncode == 4, p.stderr
    assert any("symbolic link" in e for e in _errors(p)), p.stderr
    st = target.stat()
    assert target.read_text() == "root's\n" and (st.st_uid, st.st_gid) == (0, 0)
    assert link.is_symlink()


def test_under_sudo_the_recording_is_the_users_and_their_rights_decide(shared: Path) -> None:
    open_dir = shared / "open"
    open_dir.mkdir()
    open_dir.chmod(0o1777)
    out = open_dir / "rec.ndjson"
    p = _record(out, ["id", "-u"], env=SUDO)
    assert p.returncode == 0, p.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert p.stdout.decode().strip() == str(NOBODY)
    assert read_recording(out).events[-1].reason == StopReason.EXITED  # type: ignore[union-attr]
    # A directory the user cannot write: refused, CMD not run, nothing left there.
    closed = shared / "closed"
    closed.mkdir()
    p = _record(closed / "rec.ndjson", ["touch", str(shared / "ran")], env=SUDO)
    assert p.returncode == 4 and any("Permission denied" in e for e in _errors(p)), p.stderr
    assert not (shared / "ran").exists() and not list(closed.iterdir())
    # A file of root's where the user may write: not truncated, not handed over.
    theirs = open_dir / "root-owned.ndjson"
    theirs.write_text("root's\n")
    theirs.chmod(0o666)
    p = _record(theirs, ["true"], env=SUDO)
    assert p.returncode == 4, p.stderr
    assert theirs.read_text() == "root's\n" and theirs.stat().st_uid == 0


def test_non_utf8_argv_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "x.ndjson"
    odd = from_bytes(b"x\xe9")
    p = _record(out, ["bash", "-c", "exit 0", b"x\xe9".decode("utf-8", "surrogateescape")])
    assert p.returncode == 0, p.stderr
    body = orjson.loads(out.read_bytes().split(b"\n", 1)[0])["Header"]
    assert body["command"][-1] == {"b64": "eOk="}
    rec = read_recording(out)
    assert rec.header is not None and rec.header.command == ["bash", "-c", "exit 0", odd]
    assert any(isinstance(e, Exec) and e.argv and e.argv[-1] == odd for e in rec.events)
    assert isinstance(rec.events[-1], End) and rec.events[-1].reason == StopReason.EXITED


def test_disk_full_keeps_cmd_and_ends_with_write_error(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "r.ndjson"
        p = _record(out, ["bash", "-c", "for i in $(seq 2000); do /bin/true $(printf %0200d 0);"
                          " done; echo cmd-finished; exit 3"])
        assert p.returncode == 3, p.stderr  # CMD ran to its end; its status is ours
        assert b"cmd-finished" in p.stdout
        errs = _errors(p)
        assert any("No space left on device" in e for e in errs), p.stderr
        rec = read_recording(out)  # valid NDJSON up to its last line
        end = rec.events[-1]
        if isinstance(end, End):  # room for one more line after cutting the half one
            assert end.reason == StopReason.WRITE_ERROR and end.lost > 0
            assert end.exit_status == 3
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_broken_pipe_keeps_cmd(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", "/dev/stdout", "--",
            "bash", "-c", "echo first; sleep 2; echo second; exit 5"]
    with open(tmp_path / "err", "wb") as err:
        p = subprocess.Popen(argv, env=_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=err)
        assert p.stdout is not None
        line = p.stdout.readline()
        p.stdout.close()  # `| head -1`
        rc = p.wait(timeout=scaled(120))
    text = (tmp_path / "err").read_text()
    assert rc == 5, text
    assert orjson.loads(line)["Header"]["format"] == "proctrace-bcc"
    assert "Broken pipe" in text and "first" in text and "second" in text, text


def test_a_fifo_with_no_reader_is_a_clear_error_and_one_with_a_reader_works(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    p = _record(fifo, ["touch", str(tmp_path / "ran")], timeout=60)
    assert p.returncode == 4 and any("FIFO with no reader" in e for e in _errors(p)), p.stderr
    assert not (tmp_path / "ran").exists()
    got = tmp_path / "got.ndjson"
    with open(got, "wb") as f:
        cat = subprocess.Popen(["cat", str(fifo)], stdout=f)
        p = _record(fifo, ["true"])
        cat.wait(timeout=scaled(30))
    assert p.returncode == 0, p.stderr
    assert isinstance(read_recording(got).events[-1], End)


@pytest.mark.parametrize("sudo", [False, True])
def test_sigkill_of_the_recorder_keeps_what_was_flushed_and_cmd_gets_sigterm(
        shared: Path, sudo: bool) -> None:
    d = shared / "w"
    d.mkdir()
    d.chmod(0o777)
    out = d / "r.ndjson"
    script = (f"trap 'echo term > {d}/got-term; exit 0' TERM; "
              f"for i in $(seq 50); do /bin/true; done; touch {d}/started; "
              "while :; do sleep 0.05; done")
    argv = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", str(out), "--",
            "bash", "-c", script]
    p = subprocess.Popen(argv, env=_env(SUDO if sudo else None), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + scaled(90)
        while not (d / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (d / "started").exists()
        time.sleep(0.5)  # a few poll cycles: the 50 execs are flushed
        p.kill()
        p.wait()
        deadline = time.monotonic() + scaled(30)
        while not (d / "got-term").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (d / "got-term").read_text() == "term\n"  # CMD learnt of our death
    finally:
        if p.poll() is None:
            p.kill()
    rec = read_recording(out)  # every flushed line is whole
    assert not any(isinstance(e, End) for e in rec.events)
    trues = [e for e in rec.events if isinstance(e, Exec) and e.argv == ["/bin/true"]]
    assert len(trues) == 50


def test_closed_stderr_bad_sudo_ids_stdout_and_cmds_env(tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "r.ndjson"
    p = _record(out, ["touch", str(tmp_path / "ran")], stderr=subprocess.DEVNULL,
                preexec_fn=lambda: os.close(2))
    assert p.returncode == 0 and (tmp_path / "ran").exists()
    assert isinstance(read_recording(out).events[-1], End)
    for name, value in (("SUDO_UID", "abc"), ("SUDO_GID", "1e3")):
        env = dict(SUDO, **{name: value})
        p = _record(tmp_path / "bad.ndjson", ["true"], env=env)
        assert p.returncode == 4 and _errors(p) == [
            f"proctrace-bcc: error: {name}={value!r} is not a numeric id"], p.stderr
    # -o /dev/stdout: the recording alone on stdout, CMD's output on stderr.
    p = _record("/dev/stdout", ["bash", "-c", "echo from-cmd; echo to-err >&2"])
    assert p.returncode == 0, p.stderr
    lines = [orjson.loads(ln) for ln in p.stdout.splitlines()]
    assert "Header" in lines[0] and "End" in lines[-1]
    assert b"from-cmd" in p.stderr and b"to-err" in p.stderr
    # --as-root: CMD's environment is the one we were given, not the backend's additions.
    env_file = tmp_path / "env"
    shared.chmod(0o777)  # -o is opened as the user behind sudo, --as-root or not
    p = _record(shared / "r.ndjson", ["bash", "-c", f"env > {env_file}"], "--as-root",
                env=SUDO)
    assert p.returncode == 0, p.stderr
    assert (shared / "r.ndjson").stat().st_uid == NOBODY
    assert "BCC_KERNEL_SOURCE" not in env_file.read_text()
    assert "SUDO_UID=65534" in env_file.read_text()
