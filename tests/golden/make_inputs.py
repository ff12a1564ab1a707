"""Writes the golden input recordings of tests/golden/inputs/ (deterministic).

    .venv/bin/python tests/golden/make_inputs.py

The files are committed; run this only to change them, then regenerate the expected
outputs (see tests/unit/test_golden.py).  `seed-doc.ndjson` is not written here: it
holds the events shown in the original proctrace's documentation
(/work/shared/seed/proctrace-docs.txt), one per line, deduplicated, in timestamp order.
"""

from __future__ import annotations

from pathlib import Path

import orjson

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
from proctrace_bcc.writer import RecordingWriter

HERE = Path(__file__).parent / "inputs"
MS = 1_000_000
US = 1_000


def header(command: list[str] | None, root: int, raw: bool = False) -> Header:
    return Header(version="0.1.0", backend="bcc", kernel="6.18.0", hostname="ci-runner-7",
                  command=command, root_pid=None if raw else root, raw=raw,
                  start_time="2025-03-01T10:00:00.000000+00:00",
                  options={"timeout": None, "grace": None, "fds": False})


def write(name: str, h: Header | None, events: list[Event]) -> None:
    w = RecordingWriter(HERE / name)
    if h is not None:
        w.write_header(h)
    w.write_many(events)
    w.close()


def exe(t: int, pid: int, ppid: int, pgid: int, sid: int, argv: list[str],
        filename: str | None = None, **kw: object) -> Exec:
    return Exec.from_argv(t, pid, ppid, pgid, argv, filename=filename or argv[0], sid=sid,
                          uid=1000, **kw)


def ours_ci() -> None:
    """A CI run: make test with a failing test, a killed process, a daemon left running,
    a #! script, PATH search failures, process groups and sessions, PID reuse, losses."""
    T, R = 900, 1000  # tracer, root
    ev: list[Event] = [
        Fork(0, T, R, T, T, 800),
        exe(150 * US, R, T, T, 800, ["./ci.sh", "--fast"], "./ci.sh",
            interpreter=["/bin/bash", "./ci.sh", "--fast"]),
        Fork(2 * MS, R, 1001, T, T, 800),
        SetPGID(2 * MS + 20 * US, R, T, 1001, 1001),
        ExecFailed(2 * MS + 40 * US, 1001, "/usr/local/sbin/make", 2),
        ExecFailed(2 * MS + 45 * US, 1001, "/usr/local/bin/make", 2),
        exe(2 * MS + 60 * US, 1001, R, 1001, 800, ["make", "-k", "test"], "/usr/bin/make"),
        Fork(3 * MS, 1001, 1002, 1001, 1001, 800),
        exe(3 * MS + 50 * US, 1002, 1001, 1001, 800, ["cc", "-c", "a.c", "-o", "a.o"],
            "/usr/bin/cc"),
        Exit(45 * MS, 1002, 1001, 1001, 0, None),
        Fork(46 * MS, 1001, 1003, 1001, 1001, 800),
        exe(46 * MS + 70 * US, 1003, 1001, 1001, 800, ["sh", "-c", "./run-tests unit"],
            "/bin/sh"),
        exe(47 * MS, 1003, 1001, 1001, 800, ["./run-tests", "unit"], "./run-tests",
            interpreter=["/usr/bin/python3", "./run-tests", "unit"]),
        Fork(50 * MS, 1003, 1004, 1001, 1001, 800),
        exe(50 * MS + 30 * US, 1004, 1003, 1001, 800, ["sleep", "30"], "/usr/bin/sleep"),
        Fork(52 * MS, 1003, 1005, 1001, 1001, 800),
        exe(52 * MS + 40 * US, 1005, 1003, 1001, 800, ["grep", "-q", "FAIL", "out.log"],
            "/usr/bin/grep"),
        Exit(53 * MS, 1005, 1003, 1001, 1, None),
        Exit(80 * MS, 1004, 1003, 1001, None, 9),  # killed
        Exit(81 * MS, 1003, 1001, 1001, 2, None),
        Fork(82 * MS, 1001, 1002, 1001, 1001, 800),  # pid 1002 reused
        exe(82 * MS + 40 * US, 1002, 1001, 1001, 800, ["rm", "-f", "a.o"], "/usr/bin/rm"),
        Exit(83 * MS, 1002, 1001, 1001, 0, None),
        Fork(84 * MS, 1001, 1006, 1001, 1001, 800),
        SetSID(84 * MS + 30 * US, 1006, 1001, 1006, 1006),
        exe(84 * MS + 60 * US, 1006, 1001, 1006, 1006, ["daemon", "--foreground"],
            "/usr/sbin/daemon"),
        Fork(85 * MS, 1006, 1007, 1006, 1006, 1006),  # a fork that never execs
        Exit(86 * MS, 1007, 1006, 1006, 0, None),
        Lost(90 * MS, 2, 1),
        Exit(100 * MS, 1001, R, 1001, 2, None),
        Fork(101 * MS, R, 1008, T, T, 800),
        ExecFailed(101 * MS + 50 * US, 1008, "/usr/bin/nosuch-tool", 2),
        Exit(101 * MS + 90 * US, 1008, R, T, 127, None),
        Fork(102 * MS, R, 1009, T, T, 800),
        exe(102 * MS + 40 * US, 1009, R, T, 800, ["cat", "core"], "/usr/bin/cat"),
        Exit(103 * MS, 1009, R, T, None, 11, True),
        Exit(110 * MS, R, T, T, 2, None),
        End(400 * MS, "grace", [1006], 2 << 8, 2),
    ]
    write("ours-ci.ndjson", header(["./ci.sh", "--fast"], R), ev)


def ours_argv() -> None:
    """Arguments that break naive renderers: invalid UTF-8, ':' '#' ';', a URL,
    newlines and tabs, Mermaid directives and HTML, and a truncated argv."""
    R = 2000
    url = "https://example.com:8443/api/v1/items?id=7&sort=asc#frag"
    ev: list[Event] = [
        Fork(0, 1999, R, 1999, 1999, 1999),
        exe(100 * US, R, 1999, R, 1999, ["bash", "-c", "curl -s '" + url + "'; echo done"],
            "/bin/bash"),
        Fork(1 * MS, R, 2001, R, R, 1999),
        exe(1 * MS + 50 * US, 2001, R, R, 1999, ["curl", "-s", url], "/usr/bin/curl"),
        Exit(30 * MS, 2001, R, R, 0, None),
        Fork(31 * MS, R, 2002, R, R, 1999),
        exe(31 * MS + 50 * US, 2002, R, R, 1999,
            [from_bytes(b"/opt/caf\xe9/bin/tool"), from_bytes(b"--name=\xff\xfe"), "plain"],
            from_bytes(b"/opt/caf\xe9/bin/tool")),
        Exit(32 * MS, 2002, R, R, 0, None),
        Fork(33 * MS, R, 2003, R, R, 1999),
        exe(33 * MS + 50 * US, 2003, R, R, 1999,
            ["printf", "a: b # not a comment; c:d\n\tend", "%%{init: {'theme':'forest'}}%%"],
            "/usr/bin/printf"),
        Exit(34 * MS, 2003, R, R, 0, None),
        Fork(35 * MS, R, 2004, R, R, 1999),
        exe(35 * MS + 50 * US, 2004, R, R, 1999,
            ["echo", "<script>alert(1)</script>", "&amp;", '"quoted"', "click", "section"],
            "/usr/bin/echo"),
        Exit(36 * MS, 2004, R, R, 0, None),
        Fork(37 * MS, R, 2005, R, R, 1999),
        exe(37 * MS + 50 * US, 2005, R, R, 1999, ["xargs", "-0", "x" * 40],
            "/usr/bin/xargs", truncated=True),
        Exit(38 * MS, 2005, R, R, 0, None),
        Exit(40 * MS, R, 1999, R, 0, None),
        End(41 * MS, "exited", [], 0, 0),
    ]
    write("ours-argv.ndjson", header(["bash", "-c", "curl -s '" + url + "'; echo done"], R),
          ev)


def raw_system() -> None:
    """A raw (system-wide) recording: two unrelated trees, a subreaper, PID reuse across
    trees, and an orphan of the tree of interest reparented to init."""
    ev: list[Event] = [
        Fork(0, 1, 300, 1, 1, 1),  # unrelated daemon activity
        exe(10 * US, 300, 1, 300, 300, ["cron", "-f"], "/usr/sbin/cron"),
        Fork(1 * MS, 500, 3000, 500, 500, 500),  # 500: a shell that existed before
        exe(1 * MS + 30 * US, 3000, 500, 3000, 500, ["./build.sh"], "./build.sh",
            interpreter=["/bin/sh", "./build.sh"]),
        Fork(2 * MS, 3000, 3001, 3000, 3000, 500),
        exe(2 * MS + 30 * US, 3001, 3000, 3000, 500, ["sh", "-c", "server &"], "/bin/sh"),
        Fork(3 * MS, 3001, 3002, 3000, 3000, 500),
        exe(3 * MS + 30 * US, 3002, 3001, 3000, 500, ["server", "--port", "8080"],
            "/usr/bin/server"),
        Exit(4 * MS, 3001, 3000, 3000, 0, None),  # 3002 is orphaned
        Fork(5 * MS, 300, 3003, 300, 300, 300),
        exe(5 * MS + 30 * US, 3003, 300, 300, 300, ["logrotate", "/etc/logrotate.conf"],
            "/usr/sbin/logrotate"),
        Exit(6 * MS, 3003, 300, 300, 0, None),
        Fork(7 * MS, 3000, 3004, 3000, 3000, 500),
        exe(7 * MS + 30 * US, 3004, 3000, 3000, 500, ["make"], "/usr/bin/make"),
        Exit(20 * MS, 3004, 3000, 3000, 0, None),
        Exit(21 * MS, 3000, 500, 3000, 0, None),
        Fork(22 * MS, 300, 3001, 300, 300, 300),  # pid 3001 reused outside the tree
        exe(22 * MS + 30 * US, 3001, 300, 300, 300, ["run-parts", "/etc/cron.hourly"],
            "/bin/run-parts"),
        Exit(23 * MS, 3001, 300, 300, 0, None),
        Exit(30 * MS, 3002, 1, 3000, None, 15),  # the orphan, reparented to init
        End(31 * MS, "interrupted", [300], None, 0),
    ]
    write("raw-system.ndjson", header(None, 0, raw=True), ev)


def legacy_later() -> None:
    """The original proctrace's later format: seq fields, exec pieces, BadExec,
    ExecFull, failed setsid/setpgid, args as a list, reparenting to init."""
    recs = [
        ("ExecFilename", {"seq": 1, "timestamp": 5_073_691, "pid": 4100,
                          "filename": "./demo.sh"}),
        ("ExecArgs", {"seq": 2, "timestamp": 5_073_691, "pid": 4100, "args": "./demo.sh"}),
        ("Fork", {"seq": 3, "timestamp": 5_007_751, "parent_pid": 4099, "child_pid": 4100,
                  "parent_pgid": 4098}),
        ("Exec", {"seq": 4, "timestamp": 5_073_691, "pid": 4100, "ppid": 4099, "pgid": 4100,
                  "cmdline": None}),
        ("ExecFilename", {"seq": 5, "timestamp": 6_461_572, "pid": 4100,
                          "filename": "/home/u/bin/bash"}),
        ("ExecArgs", {"seq": 6, "timestamp": 6_461_572, "pid": 4100,
                      "args": "bash ./demo.sh"}),
        ("BadExec", {"seq": 7, "timestamp": 6_518_391, "pid": 4100}),
        ("ExecFilename", {"seq": 8, "timestamp": 6_738_609, "pid": 4100,
                          "filename": "/usr/bin/bash"}),
        ("ExecArgs", {"seq": 9, "timestamp": 6_738_609, "pid": 4100,
                      "args": "bash ./demo.sh"}),
        ("Exec", {"seq": 10, "timestamp": 6_738_609, "pid": 4100, "ppid": 4099,
                  "pgid": 4100}),
        ("Fork", {"seq": 11, "timestamp": 8_885_907, "parent_pid": 4100, "child_pid": 4101,
                  "parent_pgid": 4099}),
        ("SetPGID", {"seq": 12, "timestamp": 8_900_000, "pid": 4101, "ppid": 4100,
                     "pgid": 0}),
        ("SetPGID", {"seq": 13, "timestamp": 8_910_000, "pid": 4101, "ppid": 4100,
                     "pgid": -1}),
        ("ExecFull", {"seq": 14, "timestamp": 9_609_969, "pid": 4101, "ppid": 4100,
                      "pgid": 4101, "filename": "/usr/bin/curl",
                      "args": ["curl", "-s", "http://example.com:80/#top"]}),
        ("Exit", {"seq": 15, "timestamp": 81_134_659, "pid": 4101, "ppid": 4100,
                  "pgid": 4101}),
        ("Fork", {"seq": 16, "timestamp": 81_293_127, "parent_pid": 4100, "child_pid": 4102,
                  "parent_pgid": 4099}),
        ("SetSID", {"seq": 17, "timestamp": 81_300_000, "pid": 4102, "ppid": 4100,
                    "pgid": 4102, "sid": 4102}),
        ("SetSID", {"seq": 18, "timestamp": 81_310_000, "pid": 4102, "ppid": 4100,
                    "pgid": 4102, "sid": -1}),
        ("ExecFilename", {"seq": 19, "timestamp": 81_752_212, "pid": 4102,
                          "filename": "/usr/bin/sleep"}),
        ("ExecArgs", {"seq": 20, "timestamp": 81_752_212, "pid": 4102, "args": "sleep 60"}),
        ("Exec", {"seq": 21, "timestamp": 81_752_212, "pid": 4102, "ppid": 4100,
                  "pgid": 4102}),
        ("Fork", {"seq": 22, "timestamp": 90_555_580, "parent_pid": 4100, "child_pid": 4103,
                  "parent_pgid": 4099}),
        ("Exit", {"seq": 23, "timestamp": 90_595_554, "pid": 4103, "ppid": 4100,
                  "pgid": 4103}),
        ("Exit", {"seq": 24, "timestamp": 95_379_491, "pid": 4100, "ppid": 4099,
                  "pgid": 4100}),
        ("Exit", {"seq": 25, "timestamp": 1_095_000_000, "pid": 4102, "ppid": 1,
                  "pgid": 4102}),
    ]
    with open(HERE / "legacy-later.ndjson", "wb") as f:
        for tag, body in recs:
            f.write(orjson.dumps({tag: body}) + b"\n")


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    ours_ci()
    ours_argv()
    raw_system()
    legacy_later()


if __name__ == "__main__":
    main()
