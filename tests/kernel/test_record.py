"""The recorder on a real kernel: exact trees of real commands.

Every test runs `proctrace-bcc record` as a subprocess (root, BPF), reads the
recording back and asserts the tree.  Parametrized over backends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proctrace_bcc.events import End, Exec, ExecFailed, Exit, SetPGID, SetSID, to_bytes
from proctrace_bcc.procfs import running
from proctrace_bcc.tree import Process
from tests.support import scaled

from .conftest import REPO, Recorder, Result, run_record

pytestmark = pytest.mark.kernel


def _end(r: Result) -> End:
    end = r.rec.end
    assert end is not None, "recording has no End event"
    return end


def _last_argv(p: Process) -> list[str]:
    argv = p.execs[-1].argv
    assert argv is not None, f"{p.command}: its exec recorded no argv"
    return argv


def test_exit_status_and_tree_of_a_script(record: Recorder, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n/bin/true\n/bin/false\n(exit 7)\nexit 3\n")
    script.chmod(0o755)
    r = record([str(script), "arg one", ""])
    assert r.rc == 3
    root = r.root
    # the caller's argv, and the interpreter the kernel ran
    assert root.execs[0].argv == [str(script), "arg one", ""]
    assert root.execs[0].interpreter == ["/bin/sh"]
    assert root.execs[0].filename == str(script)
    assert root.exit is not None and root.exit.exit_code == 3
    kids = root.children
    assert [k.command for k in kids[:2]] == ["/bin/true", "/bin/false"]
    assert [k.exit.exit_code for k in kids if k.exit] == [0, 1, 7]
    assert _end(r).reason == "exited" and _end(r).lost == 0
    assert r.tree.lost == 0


def test_nested_shells_and_pipeline(record: Recorder) -> None:
    r = record(["sh", "-c", "bash -c 'echo hi | tr a-z A-Z | wc -c' >/dev/null; true"])
    assert r.rc == 0
    bash = r.by_command("bash -c")
    assert len(bash) == 1
    names = sorted(_last_argv(p)[0] for p in bash[0].walk() if p.execs and p is not bash[0])
    assert names == ["tr", "wc"]
    # the pipeline's three elements are children of bash (echo runs in a forked subshell)
    assert len(bash[0].children) == 3
    for p in r.procs():
        assert p.exit is not None, f"{p.command} did not exit"


def test_background_job_and_wait(record: Recorder) -> None:
    r = record(["sh", "-c", "sleep 0.3 & sleep 0.1; wait"])
    sleeps = r.by_command("sleep")
    assert sorted(_last_argv(p)[1] for p in sleeps) == ["0.1", "0.3"]
    assert all(p.parent is r.root for p in sleeps)
    assert all(p.exit and p.exit.exit_code == 0 for p in sleeps)


def test_double_forked_daemon_with_setsid_is_waited_for(record: Recorder) -> None:
    # The daemon outlives everything else and is reparented; the recording waits for it.
    r = record(["sh", "-c", "(setsid sh -c 'sleep 0.6; exit 5' &); exit 0"])
    assert r.rc == 0
    daemons = [p for p in r.procs() if p.execs and p.execs[-1].argv == ["sh", "-c", "sleep 0.6; exit 5"]]
    assert len(daemons) == 1
    d = daemons[0]
    assert d.exit is not None and d.exit.exit_code == 5
    assert d.exit.timestamp > r.root.exit.timestamp  # type: ignore[union-attr]
    # it was forked by the subshell, which was forked by the root
    assert d.parent is not None and d.parent.parent is r.root
    # reparented at exit: ppid is no longer the (dead) subshell
    assert d.exit.ppid != d.parent.pid
    # setsid made it a session and group leader
    setsid = [ev for ev in r.rec.events if isinstance(ev, SetSID)]
    assert any(ev.sid == d.pid and ev.pgid == d.pid for ev in setsid)
    assert d.sid == d.pid
    assert _end(r).reason == "exited"


def test_job_control_records_setpgid(record: Recorder) -> None:
    r = record(["bash", "-c", "set -m; sleep 0.1 & wait; /bin/true"])
    assert r.rc == 0
    pg = [ev for ev in r.rec.events if isinstance(ev, SetPGID)]
    sleep = r.by_command("sleep")[0]
    # bash calls setpgid(child, child) in both parent and child: at least one succeeds
    assert any(ev.target_pid == sleep.pid and ev.pgid == sleep.pid for ev in pg)
    assert sleep.pgid == sleep.pid
    assert sleep.execs[0].argv == ["sleep", "0.1"]


def test_command_not_found_records_failed_execs(record: Recorder) -> None:
    # dash tries execve on every PATH entry: each failure is an ExecFailed
    r = record(["sh", "-c", "exec no-such-command-xyz"], env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert r.rc == 127
    started = r.root.execs[0].timestamp  # before it: the recorder's own PATH search for `sh`
    failed = [ev for ev in r.rec.events if isinstance(ev, ExecFailed) and ev.timestamp > started]
    assert [ev.filename for ev in failed] == [
        "/usr/local/bin/no-such-command-xyz", "/usr/bin/no-such-command-xyz",
        "/bin/no-such-command-xyz",
    ]
    assert all(ev.errno == 2 and ev.pid == r.root.pid for ev in failed)
    assert r.root.exit is not None and r.root.exit.exit_code == 127


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_death_by_signal(record: Recorder, sig: int) -> None:
    # the inner shell has exec'd when it kills itself: no race with the exec
    r = record(["sh", "-c", f"sh -c 'kill -{int(sig)} $$'; exit 0"])
    assert r.rc == 0
    sleep = r.by_command("sh -c kill")[0]
    assert sleep.parent is r.root
    assert sleep.exit is not None
    assert sleep.exit.signal == sig and sleep.exit.exit_code is None
    assert not sleep.exit.core_dumped


def test_exit_status_of_record_is_the_commands(record: Recorder) -> None:
    assert record(["sh", "-c", "exit 7"]).rc == 7
    r = record(["sh", "-c", "kill -TERM $$"])
    assert r.rc == 128 + signal.SIGTERM
    assert r.root.exit is not None and r.root.exit.signal == signal.SIGTERM


def test_threads_are_not_processes(record: Recorder) -> None:
    code = (
        "import os, threading, time\n"
        "ts = [threading.Thread(target=time.sleep, args=(0.05,)) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "t = threading.Thread(target=lambda: os._exit(9)); t.start(); time.sleep(5)\n"
    )
    r = record([sys.executable, "-c", code])
    assert r.rc == 9
    assert len(r.procs()) == 1
    assert r.root.exit is not None and r.root.exit.exit_code == 9
    # one Exit only: thread exits are not process exits
    assert sum(1 for ev in r.rec.events if type(ev).__name__ == "Exit") == 1


def test_exec_chain(record: Recorder) -> None:
    r = record(["sh", "-c", "exec sh -c 'exec env true'"])
    assert r.rc == 0
    assert len(r.procs()) == 1
    assert [e.argv for e in r.root.execs] == [
        ["sh", "-c", "exec sh -c 'exec env true'"], ["sh", "-c", "exec env true"],
        ["env", "true"], ["true"],
    ]


def test_argv_is_exact(record: Recorder, tmp_path: Path) -> None:
    weird = ["", "two words", "tab\there", "ünïcödé ✓", "new\nline", "quote\"'", "--x=a:b"]
    r = record(["/bin/echo", *weird])
    assert r.root.execs[0].argv == ["/bin/echo", *weird]
    assert r.root.execs[0].truncated is False


def test_non_utf8_argv_round_trips(record: Recorder, tmp_path: Path) -> None:
    raw = b"\xff\xfe-bytes-\x80"
    script = tmp_path / "nonutf8.py"
    script.write_text(
        "import os\n"
        f"os.execv('/bin/true', [b'true', {raw!r}, b''])\n"
    )
    r = record([sys.executable, str(script)])
    ex = r.root.execs[-1]
    assert [to_bytes(a) for a in ex.argv or []] == [b"true", raw, b""]


def test_two_thousand_arguments(record: Recorder) -> None:
    args = [f"arg{i:04d}" for i in range(2000)]
    r = record(["/bin/true", *args])
    assert r.root.execs[0].argv == ["/bin/true", *args]
    assert r.root.execs[0].truncated is False


def test_argv_longer_than_the_limit_is_flagged(record: Recorder) -> None:
    args = ["x" * 1000 for _ in range(80)]  # 80 KB: beyond the default limit
    r = record(["/bin/true", *args])
    ex = r.root.execs[0]
    assert ex.truncated is True
    assert len("".join(ex.argv or [])) >= 32 * 1024  # at least 32 KiB kept
    assert (ex.argv or [])[:2] == ["/bin/true", "x" * 1000]


def test_timeout_records_running_processes(record: Recorder) -> None:
    t = time.monotonic()
    r = record(["sleep", "300"], "--timeout", "1")
    assert time.monotonic() - t < scaled(20)
    assert r.rc == 124
    end = _end(r)
    assert end.reason == "timeout"
    assert end.running == [r.root.pid]  # still running when recording stopped: shown as such
    # and then ended by the recorder (issue 14: its Exit is recorded before End)
    assert r.root.exit is not None and r.root.exit.signal == signal.SIGTERM


def test_grace_bounds_waiting_for_leftovers(record: Recorder, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    r = record(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; exit 4"], "--grace", "0.5")
    try:
        assert r.rc == 4
        end = _end(r)
        assert end.reason == "grace"
        left = int(pidfile.read_text())
        assert end.running == [left]
        sleep = next(p for p in r.procs() if p.pid == left)
        assert sleep.exit is None and sleep.execs[0].argv == ["sleep", "30"]
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_ctrl_c_keeps_everything_recorded(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "int.ndjson"
    marker = tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen(
        [sys.executable, "-m", "proctrace_bcc", "record", "-q", "-o", str(out), "--backend",
         backend, "--", "sh", "-c", f"/bin/true; touch {marker}; sleep 30"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + scaled(60)
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists()
        time.sleep(0.3)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        p.wait(scaled(30))
    finally:
        if p.poll() is None:
            p.kill()
    from proctrace_bcc.read import read_recording
    from proctrace_bcc.tree import build_tree

    rec = read_recording(out)  # valid NDJSON to the last line
    assert not rec.warnings
    tree = build_tree(rec.events, rec.header)
    cmds = [e.argv for pr in tree.processes for e in pr.execs]
    assert ["/bin/true"] in cmds and ["touch", str(marker)] in cmds and ["sleep", "30"] in cmds
    assert rec.end is not None and rec.end.reason == "interrupted"
    assert p.returncode == 128 + signal.SIGINT


def test_runs_command_as_the_sudo_user(backend: str) -> None:
    """The recording too is opened as the sudo user (issue 13): it goes to a directory
    they may write, not to tmp_path (root's, mode 0700)."""
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="proctrace-sudo-"))
    shared.chmod(0o777)
    out = shared / "id.txt"
    env = {"SUDO_UID": str(pw.pw_uid), "SUDO_GID": str(pw.pw_gid), "SUDO_USER": pw.pw_name}
    from functools import partial

    record = partial(run_record, shared, backend)
    r = record(["sh", "-c", f"id -u > {out}; echo $HOME $USER >> {out}"], env=env)
    assert r.rc == 0
    lines = out.read_text().split("\n")
    assert lines[0] == str(pw.pw_uid)
    assert lines[1] == f"{pw.pw_dir} {pw.pw_name}"
    assert r.root.uid == pw.pw_uid
    assert r.path.stat().st_uid == pw.pw_uid
    r2 = record(["id", "-u"], "--as-root", env=env)
    assert r2.stdout.strip() == "0"


def test_ids_match_what_the_processes_see(record: Recorder, tmp_path: Path) -> None:
    """ppid, pgid and sid as the kernel reports them to the processes themselves."""
    out = tmp_path / "ids.txt"
    r = record(["bash", "-c",
                f"set -m; (ps -o pid=,ppid=,pgid=,sid= -p $BASHPID > {out}) ; wait"])
    assert r.rc == 0
    pid, ppid, pgid, sid = (int(x) for x in out.read_text().split())
    ps = next(p for p in r.procs() if p.execs and p.execs[-1].argv and p.execs[-1].argv[0] == "ps")
    assert ps.pid == pid
    ex: Exec = next(ev for ev in r.rec.events if isinstance(ev, Exec) and ev.pid == pid)
    assert (ex.ppid, ex.pgid, ex.sid) == (ppid, pgid, sid)


def test_recorder_inside_a_pid_namespace(tmp_path: Path, backend: str) -> None:
    if subprocess.run(["unshare", "--help"], capture_output=True).returncode != 0:
        pytest.skip("unshare not available")
    out = tmp_path / "pids.txt"
    r = run_record(tmp_path, backend, ["sh", "-c", f"echo $$ $PPID > {out}; sh -c 'echo $$ >> {out}'"],
                   prefix=["unshare", "--pid", "--fork", "--mount-proc"])
    assert r.rc == 0, r.stderr
    sh_pid, sh_ppid, inner = (int(x) for x in out.read_text().split())
    assert r.root.pid == sh_pid
    assert sh_ppid == 1  # the recorder is the namespace's init
    first = next(ev for ev in r.rec.events if isinstance(ev, Exec) and ev.pid == sh_pid)
    assert first.ppid == 1
    assert [p.pid for p in r.root.children] == [inner]


def test_matches_strace_ground_truth(record: Recorder, tmp_path: Path) -> None:
    """Every successful execve strace sees, we record with the same argv, and no more."""
    import ast
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    script = "for i in 1 2 3; do /bin/echo \"$i a\" '' >/dev/null; done; ls / >/dev/null | cat; env true"
    # -ff: one file per process, so concurrent execs are never split into
    # "<unfinished ...>" / "<... resumed>" lines
    trace = tmp_path / "strace"
    subprocess.run(["strace", "-f", "-ff", "-qq", "-s", "100000", "-xx", "-e",
                    "trace=execve,execveat", "-e", "signal=none", "-o", str(trace), "sh", "-c",
                    script], check=True)
    expected = []
    for f in sorted(tmp_path.glob("strace.*")):
        for line in f.read_text().splitlines():
            if line.startswith("execve(") and line.rstrip().endswith("= 0"):
                lst = line.split(", [", 1)[1].rsplit("], ", 1)[0]
                items = ast.literal_eval("[" + ", ".join("b" + x.strip() for x in lst.split(", ")) + "]")
                expected.append([x.decode() for x in items])
    assert len(expected) == 8  # sh, echo x 3, ls, cat, env, and the true that env execs
    r = record(["sh", "-c", script])
    assert sorted(r.execs()) == sorted(expected)


def test_kill_leftovers_ends_what_grace_left_behind(record: Recorder, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    r = record(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; exit 0"], "--grace", "0.3",
               "--kill-leftovers")
    left = int(pidfile.read_text())
    assert r.rc == 0
    assert _end(r).running == [left]  # recorded as running when recording stopped
    # and then ended (a zombie until its new parent, init, reaps it), its Exit recorded
    assert not running(left)
    assert left in {e.pid for e in r.rec.events if isinstance(e, Exit)}


def test_timeout_with_kill_leftovers_still_exits_124(record: Recorder) -> None:
    # Ending the leftover (sleep) lets sh finish on its own before the recorder
    # terminates it: the timeout fired while CMD ran, so `record` says 124.
    r = record(["sh", "-c", "sleep 300; exit 7"], "--timeout", "1", "--kill-leftovers")
    assert r.rc == 124
    assert _end(r).reason == "timeout"
