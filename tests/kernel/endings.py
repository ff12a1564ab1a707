"""Record a hanging command and end the run each way a CI job ends (issue 14).

Used by the kernel tests (tests/kernel/test_leak_endings.py) and, with
``python -m tests.kernel.endings ENDING OUT BATSFILE``, to make the fixtures of
tests/fixtures/ from real runs.  Each ending:

- ``group-term``: coreutils ``timeout -s TERM`` around the recorder: the recorder, CMD
  and every process of the group get SIGTERM at the same instant (GitHub Actions,
  GitLab and Jenkins end a timed-out job so);
- ``timeout``: ``record --timeout``;
- ``kill-leftovers``: ``record --timeout --grace 2 --kill-leftovers``;
- ``sigkill``: SIGKILL of the recorder (no End event: the file just stops);
- ``sigint-group``: SIGINT to the recorder's process group, as a terminal's Ctrl-C;
- ``grace-piped``: ``record --grace 2 --kill-leftovers ... | cat``: the recorder's stdout
  is a pipe to a `cat` outside the recording (a CI runner reading the step's output).

The recorder's output goes to files, never to pipes we would wait on (a leftover
holding them would hang us as it hangs bats).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from proctrace_bcc.events import from_bytes
from proctrace_bcc.read import read_recording
from proctrace_bcc.tree import Process, build_tree
from tests.support import scaled

REPO = Path(__file__).resolve().parents[2]
ENDINGS = ("group-term", "timeout", "kill-leftovers", "sigkill", "sigint-group")  # bats
CULPRIT = "python3 -c import time; time.sleep(120)"
HOLD_S = 3.0  # how long the culprit holds the pipe before the run is ended from outside


def cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return " ".join(from_bytes(a) for a in raw.rstrip(b"\0").split(b"\0"))


def kill_if(pid: int, cmd: str) -> None:
    """SIGKILL `pid` if it still runs `cmd` (guards against pid reuse; the program may be
    named by its full path: /usr/bin/python3)."""
    now = cmdline(pid)
    if now is not None and (now == cmd or now.endswith("/" + cmd)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def image_cmdline(p: Process) -> str:
    """What /proc/PID/cmdline shows for p: its last exec's argv, else its parent's."""
    q: Process | None = p
    while q is not None and not q.execs:
        q = q.parent
    if q is None:
        return ""
    return " ".join(q.execs[-1].argv or [q.execs[-1].cmdline])


def _wait_for(path: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def record_ending(out: Path, ending: str, cmd: Sequence[str], pidfile: Path,
                  timeout_s: float | None = None, backend: str = "bcc") -> int:
    """Record `cmd` with --fds into `out`, ended the `ending` way; the recorder's status.

    `pidfile` is written by CMD with the culprit's pid: the endings from outside wait
    for it, then HOLD_S more, so that the culprit held the pipe well after its parent
    exited.
    """
    # From outside, the limit must cover the recorder's start (BPF compilation: seconds).
    t = timeout_s if timeout_s is not None else scaled(20 if ending == "group-term" else 6)
    rec = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "--backend", backend, "--fds",
           "-o", str(out)]
    extra = {"timeout": ["--timeout", f"{t:g}"],
             "kill-leftovers": ["--timeout", f"{t:g}", "--grace", "2", "--kill-leftovers"],
             "grace-piped": ["--timeout", f"{t:g}", "--grace", "2", "--kill-leftovers"]}
    argv = [*rec, *extra.get(ending, []), "--", *cmd]
    if ending == "group-term":
        argv = ["timeout", "-s", "TERM", f"{t:g}", *argv]
    env = dict(os.environ, PYTHONPATH=str(REPO), LEAK_PIDFILE=str(pidfile))
    d = out.parent
    with open(d / f"{out.stem}.stdout", "wb") as so, open(d / f"{out.stem}.stderr", "wb") as se:
        cat = None
        if ending == "grace-piped":
            cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=so)
            assert cat.stdin is not None
        p = subprocess.Popen(argv, stdout=cat.stdin if cat else so, stderr=se,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        if cat is not None and cat.stdin is not None:
            cat.stdin.close()  # only the recorder and its tree hold the write end now
        try:
            if ending in ("sigkill", "sigint-group"):
                _wait_for(pidfile, scaled(30))
                time.sleep(HOLD_S)
                if ending == "sigkill":
                    p.kill()
                else:
                    os.killpg(p.pid, signal.SIGINT)
            return p.wait(timeout=scaled(120))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            if cat is not None:
                try:
                    cat.wait(timeout=scaled(10))
                except subprocess.TimeoutExpired:
                    cat.kill()
                    cat.wait()


@contextlib.contextmanager
def cleaned_up(out: Path, pidfile: Path) -> Iterator[None]:
    """Afterwards kill the culprit and whatever the recording says still runs, each
    only if its pid still runs the command the recording says."""
    try:
        yield
    finally:
        if pidfile.exists():
            with contextlib.suppress(ValueError):
                kill_if(int(pidfile.read_text()), CULPRIT)
        if out.exists():
            rec = read_recording(out)
            for q in build_tree(rec.events, rec.header).processes:
                if q.exit is None:
                    kill_if(q.pid, image_cmdline(q))


LEAK_BATS = """\
@test "a background python keeps fd 3" {
  python3 -c 'import time; time.sleep(120)' &
  echo $! > "$LEAK_PIDFILE"
}
"""
CONTROL_BATS = """\
@test "a background python closes fd 3" {
  python3 -c 'import time; time.sleep(120)' 3>&- &
  echo $! > "$LEAK_PIDFILE"
}
"""


def main(argv: Sequence[str]) -> int:
    """ENDING OUT CMD...: record CMD (a lone *.bats file: `bats FILE`) ended that way."""
    ending, out_s, *cmd = argv
    if len(cmd) == 1 and cmd[0].endswith(".bats"):
        cmd = ["bats", cmd[0]]
    out = Path(out_s).resolve()
    pidfile = out.with_suffix(".pid")
    pidfile.unlink(missing_ok=True)
    with cleaned_up(out, pidfile):
        rc = record_ending(out, ending, cmd, pidfile)
    print(f"{ending} {out.name}: recorder status {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
