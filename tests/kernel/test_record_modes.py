"""System-wide and --raw recordings, `ingest`, and --fds, on a real kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from proctrace_bcc.events import Exec, FdSnapshot, Lost
from proctrace_bcc.read import read_recording
from proctrace_bcc.tree import build_tree
from tests.support import scaled

from .conftest import REPO, Recorder

pytestmark = pytest.mark.kernel
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proctrace_bcc", *args], capture_output=True,
                          text=True, timeout=scaled(timeout), env=ENV, stdin=subprocess.DEVNULL)


def test_system_wide_then_ingest_the_subtree(tmp_path: Path, backend: str) -> None:
    raw = tmp_path / "raw.ndjson"
    rec = subprocess.Popen(
        [sys.executable, "-m", "proctrace_bcc", "record", "-q", "--backend", backend,
         "-o", str(raw), "--timeout", "30"], env=ENV, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + scaled(60)
        while time.monotonic() < deadline and (not raw.exists() or raw.stat().st_size == 0):
            time.sleep(0.05)
        time.sleep(0.3)  # the header is written once the probes are live
        job = subprocess.Popen(["sh", "-c", "/bin/echo one >/dev/null; sh -c 'exit 3'; true"])
        job.wait()
        time.sleep(0.5)
    finally:
        rec.terminate()
        rec.wait(scaled(30))
    assert rec.stderr is not None  # stderr=PIPE
    assert rec.returncode == 0, rec.stderr.read().decode()
    whole = read_recording(raw)
    assert whole.header is not None and whole.header.raw and whole.header.root_pid is None
    assert whole.end is not None and whole.end.reason == "terminated"
    cut = tmp_path / "cut.ndjson"
    r = _cli("ingest", "-i", str(raw), "-p", str(job.pid), "-o", str(cut))
    assert r.returncode == 0, r.stderr
    sub = read_recording(cut)
    assert sub.header is not None and sub.header.root_pid == job.pid and not sub.header.raw
    tree = build_tree(sub.events, sub.header)
    procs = [p for root in tree.roots if root.pid == job.pid for p in root.walk()]
    assert [e.argv for p in procs for e in p.execs] == [
        ["sh", "-c", "/bin/echo one >/dev/null; sh -c 'exit 3'; true"],
        ["/bin/echo", "one"], ["sh", "-c", "exit 3"]]
    codes = [p.exit.exit_code for p in procs if p.exit]
    assert None not in codes and sorted(c for c in codes if c is not None) == [0, 0, 3]
    # nothing from outside the subtree
    pids = {p.pid for p in procs}
    assert all(ev.pid in pids for ev in sub.events if isinstance(ev, Exec))


def test_raw_with_command_keeps_other_processes(record: Recorder) -> None:
    stop = threading.Event()

    def noise() -> None:
        while not stop.is_set():
            subprocess.run(["/bin/true", "noise-outside-the-tree"])
            time.sleep(0.02)

    t = threading.Thread(target=noise)
    t.start()
    try:
        r = record(["sh", "-c", "sleep 0.5; /bin/true inside"], "--raw")
    finally:
        stop.set()
        t.join()
    assert r.rc == 0
    assert r.rec.header is not None and r.rec.header.raw and r.rec.header.root_pid == r.root.pid
    argvs = [ev.argv for ev in r.rec.events if isinstance(ev, Exec)]
    assert ["/bin/true", "noise-outside-the-tree"] in argvs
    assert ["/bin/true", "noise-outside-the-tree"] not in r.execs()  # not in CMD's tree
    assert ["/bin/true", "inside"] in r.execs()


def test_fds_pair_pipe_ends_and_tell_inherited(record: Recorder, tmp_path: Path,
                                              backend: str) -> None:
    if backend == "bpftrace":
        pytest.skip("the bpftrace backend records no exec-time fd tables (docs/backends.md)")
    log = tmp_path / "log.txt"
    r = record(["bash", "-c", f"exec 3>{log}; /bin/sleep 0.1 4>/dev/null | /bin/cat"], "--fds")
    assert r.rc == 0
    sleep = r.by_command("/bin/sleep")[0]
    cat = r.by_command("/bin/cat")[0]
    sfds = {f.fd: f for f in sleep.execs[0].fds or []}
    cfds = {f.fd: f for f in cat.execs[0].fds or []}
    # the pipe between them: same object, write end in sleep, read end in cat
    assert sfds[1].kind == "pipe" and cfds[0].kind == "pipe"
    assert (sfds[1].dev, sfds[1].ino) == (cfds[0].dev, cfds[0].ino)
    assert sfds[1].flags is not None and sfds[1].flags & 3 == 1
    assert cfds[0].flags is not None and cfds[0].flags & 3 == 0
    # fd 3 came from bash (open at fork); fd 1 and fd 4 were set up after the fork
    assert sfds[3].kind == "file" and sfds[3].path == "log.txt" and sfds[3].inherited is True
    assert sfds[1].inherited is False and sfds[4].inherited is False
    assert sfds[4].kind == "char"
    st = os.stat(log)
    assert sfds[3].ino == st.st_ino
    if _fs_type(log) != "overlay":
        # overlayfs over several filesystems (a VM guest's /tmp) makes stat() report
        # a per-layer st_dev, not the overlay's s_dev that the kernel side reads
        assert sfds[3].dev == st.st_dev


def _fs_type(path: Path) -> str:
    """The type of the filesystem mounted nearest above path (/proc/self/mountinfo)."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mnt = left.split()[4].replace("\\040", " ")
        if (str(path).startswith(mnt.rstrip("/") + "/") or str(path) == mnt) and len(mnt) >= len(best):
            best, kind = mnt, right.split()[0]
    return kind


def test_fds_snapshot_of_processes_alive_at_the_end(record: Recorder, tmp_path: Path,
                                                   backend: str) -> None:
    r = record(["sh", "-c", "sleep 30 | cat"], "--fds", "--timeout", "1.5")
    assert r.rc == 124
    snaps = {ev.pid: ev for ev in r.rec.events if isinstance(ev, FdSnapshot)}
    sleep = r.by_command("sleep")[0]
    cat = r.by_command("cat")[0]
    assert sleep.pid in snaps and cat.pid in snaps
    w = next(f for f in snaps[sleep.pid].fds if f.fd == 1)
    rd = next(f for f in snaps[cat.pid].fds if f.fd == 0)
    assert w.kind == rd.kind == "pipe" and w.ino == rd.ino and w.path == f"pipe:[{w.ino}]"
    if backend == "bpftrace":
        assert sleep.execs[0].fds is None  # no exec-time tables from bpftrace, and it says so
        assert "records no descriptor tables" in r.stderr
        return
    # the /proc snapshot and the BPF exec-time table agree on the pipe's identity
    exec_fd1 = next(f for f in sleep.execs[0].fds or [] if f.fd == 1)
    assert (exec_fd1.dev, exec_fd1.ino) == (w.dev, w.ino)


def test_losses_are_recorded_and_do_not_hang_the_recorder(tmp_path: Path, backend: str) -> None:
    if backend != "bcc":
        pytest.skip("--buffer-pages sizes BCC's perf buffer")
    out = tmp_path / "lost.ndjson"
    # 2 KB of argv per exec: a one-page buffer overflows long before the reader wakes
    loop = "for i in $(seq 1500); do /bin/true $A; done"
    storm = f"A=$(head -c 2000 /dev/zero | tr '\\0' x); {loop} & {loop}; wait"
    r = _cli("record", "-q", "--backend", backend, "--buffer-pages", "1", "-o", str(out),
             "--", "sh", "-c", storm)
    assert r.returncode == 0, r.stderr
    rec = read_recording(out)
    lost = [ev for ev in rec.events if isinstance(ev, Lost)]
    assert lost, "a one-page buffer under a 3,000-process storm should lose events"
    assert rec.end is not None and rec.end.reason == "exited"
    assert rec.end.lost == sum(ev.count for ev in lost)
    execs = sum(1 for ev in rec.events if isinstance(ev, Exec))
    assert execs < 3003  # some were lost...
    assert execs + rec.end.lost >= 3003  # ...and every one is accounted for (exec or lost)


def test_unusable_backend_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "never.ndjson"
    r = _cli("record", "-q", "--backend", "bpftrace", "-b", str(tmp_path / "no-bpftrace"),
             "-o", str(out), "--", "true")
    assert r.returncode == 4
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "not an executable file" in r.stderr
    assert not out.exists()
