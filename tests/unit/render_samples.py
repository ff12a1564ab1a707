"""Small hand-built recordings for the html and chrome-trace renderer tests.

`write_mixed` writes one recording with every case the renderers must handle: a nested
tree, a process failing with exit 1, one killed by SIGKILL after a failed exec and two
execs, one still running at the end (after setsid) whose argv is hostile HTML, one with
a non-UTF-8 argv (after setpgid), a reused pid, lost events and an End event.
"""

from __future__ import annotations

from pathlib import Path

from proctrace_bcc.events import (
    End,
    Event,
    Exec,
    ExecFailed,
    Exit,
    Fork,
    Header,
    Lost,
    SetPGID,
    SetSID,
    from_bytes,
)
from proctrace_bcc.read import Recording, read_recording
from proctrace_bcc.tree import ProcessTree, build_tree
from proctrace_bcc.writer import RecordingWriter

MS = 1_000_000  # ns
HOSTILE = '</script><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
AMP = "a&lt;b & c>d"
NON_UTF8 = from_bytes(b"\xff\xfe-bin")

# pid -> (expected status, outcome class) for the mixed recording's first process of each pid
EXPECTED = {
    100: "exit 2",
    101: "exit 2",
    102: "exit 0",
    103: "exit 1",
    104: "SIGKILL",
    105: "running",
    106: "exit 3",
}


def mixed_events() -> list[Event]:
    def fork(t: int, parent: int, child: int, pgid: int = 100) -> Fork:
        return Fork(timestamp=t, parent_pid=parent, child_pid=child, parent_pgid=pgid,
                    child_pgid=pgid, sid=50)

    def exe(t: int, pid: int, ppid: int, argv: list[str], pgid: int = 100) -> Exec:
        return Exec.from_argv(t, pid, ppid, pgid, argv, filename="/usr/bin/" + argv[0], sid=50)

    def exit_(t: int, pid: int, ppid: int, code: int | None = None, sig: int | None = None,
              pgid: int = 100) -> Exit:
        return Exit(timestamp=t, pid=pid, ppid=ppid, pgid=pgid, exit_code=code, signal=sig)

    return [
        exe(1 * MS, 100, 99, ["bash", "-c", "make test"]),
        fork(2 * MS, 100, 101),
        exe(3 * MS, 101, 100, ["make", "test"]),
        fork(4 * MS, 101, 102),
        exe(4 * MS + MS // 2, 102, 101, ["gcc", "-c", "a.c", "-o", "a.o"]),
        fork(5 * MS, 101, 103),
        exe(5 * MS + 200_000, 103, 101, ["gcc", "-c", "bad file.c"]),
        fork(6 * MS, 101, 104),
        ExecFailed(timestamp=6 * MS + 100_000, pid=104, filename="/usr/bin/nosuch", errno=2),
        exe(6 * MS + 200_000, 104, 101, ["sh", "-c", "sleep 100"]),
        exe(6 * MS + 300_000, 104, 101, ["sleep", "100"]),
        fork(7 * MS, 100, 105),
        SetSID(timestamp=7 * MS + 100_000, pid=105, ppid=100, pgid=105, sid=105),
        Exec.from_argv(7 * MS + 200_000, 105, 100, 105, ["daemon", HOSTILE, AMP], sid=105),
        fork(8 * MS, 100, 106),
        SetPGID(timestamp=8 * MS + 100_000, pid=106, ppid=100, pgid=106, target_pid=106),
        exe(8 * MS + 200_000, 106, 100, [NON_UTF8, "arg"], pgid=106),
        exit_(12 * MS, 106, 100, code=3, pgid=106),
        exit_(15 * MS, 103, 101, code=1),
        exit_(20 * MS, 102, 101, code=0),
        fork(21 * MS, 101, 102),  # pid 102 reused
        exe(21 * MS + 100_000, 102, 101, ["true"]),
        exit_(22 * MS, 102, 101, code=0),
        Lost(timestamp=25 * MS, count=3, cpu=1),
        exit_(30 * MS, 104, 101, sig=9),
        exit_(40 * MS, 101, 100, code=2),
        exit_(41 * MS, 100, 99, code=2),
        End(timestamp=50 * MS, reason="exited", running=[105], exit_status=2 << 8, lost=3),
    ]


def mixed_header() -> Header:
    return Header(version="0.1.0", backend="bcc", kernel="6.18.0", hostname="ci-runner-7",
                  command=["bash", "-c", "make test"], root_pid=100,
                  start_time="2024-05-01T12:00:00Z")


def write(path: Path, events: list[Event], header: Header | None) -> Path:
    w = RecordingWriter(path)
    if header is not None:
        w.write_header(header)
    for ev in events:
        w.write(ev)
    w.close()
    return path


def write_mixed(path: Path) -> Path:
    return write(path, mixed_events(), mixed_header())


def load(path: Path) -> tuple[Recording, ProcessTree]:
    rec = read_recording(path)
    return rec, build_tree(rec.events, rec.header)
