"""How fast `analyze` is on a big recording, against merely parsing the file with orjson.

    .venv/bin/python bench/analyze_bench.py [--events N] [--keep PATH] [--rounds R]
    .venv/bin/python bench/analyze_bench.py --against /tmp/before [--rounds R] [--instructions]

Generates a synthetic recording (default 1,000,000 events, ~150,000 processes: a CI
driver running 8 parallel workers that spawn shells, which exec wrapper chains after
PATH-search failures, fork tools, change process groups and sessions, fail, get killed,
and a few never exit; PIDs are reused), then times, each in a fresh subprocess:

- ``parse``: read the file line by line and ``orjson.loads`` every line (the floor);
- ``analyze -d sequential``, ``-d by-process`` and ``-d tree`` (output to /dev/null),

and prints wall time (median of R rounds), the ratio to ``parse`` and the peak RSS of
each subprocess (``ru_maxrss``; the recording is generated in a child too, so that its
memory does not count).  It also times every mode on a recording with about the same
number of processes but several times the events (SetPGID storms), to show that memory
follows processes, not events.  ``--against CHECKOUT`` instead runs each mode from this
checkout and from another one in turns (CPU medians, and with ``--instructions`` the
instructions each run executes under valgrind: the same every run, whatever the load).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
)
from proctrace_bcc.writer import RecordingWriter

US = 1_000
MS = 1_000_000
WORKERS = 8
ROOT = 1000
TOOLS = [
    ["/nix/store/9v5m3k1s7yq0x2z4r8c6b1n0w3e5t7u9-gcc-13.2.0/bin/gcc", "-O2", "-Wall", "-c"],
    ["/usr/bin/ld", "-o", "build/out.so", "--as-needed"],
    ["/usr/bin/python3", "-m", "pytest", "-x", "-q"],
    ["/usr/bin/sed", "-e", "s/@VERSION@/1.2.3/", "-i"],
    ["/usr/bin/git", "rev-parse", "--short", "HEAD"],
    ["/usr/bin/grep", "-q", "-E", "^[a-z]+: ok$"],
    ["/usr/bin/curl", "-s", "-o", "/dev/null", "https://example.com:8443/health#ok"],
    ["/usr/bin/env", "LANG=C", "sort", "-u"],
]


def _worker(w: int, rnd: random.Random, budget: list[int], storm: int) -> Iterator[Event]:
    """One worker's events, in time order.  `budget[0]` counts processes left to spawn."""
    wpid = ROOT + 1 + w
    base = 10_000 + w * 4_000  # each worker cycles through 4000 pids: PID reuse
    nxt = 0
    reserved: set[int] = set()  # never-exiting processes keep their pid

    def alloc() -> int:
        nonlocal nxt
        while True:
            pid = base + nxt
            nxt = (nxt + 1) % 4_000
            if pid not in reserved:
                return pid

    t = 2 * MS + w * 37 * US
    yield Fork(t, ROOT, wpid, ROOT, ROOT, ROOT)
    yield Exec.from_argv(t + 80 * US, wpid, ROOT, ROOT,
                         ["/usr/bin/make", "-C", f"worker{w}", "-k", "check"],
                         filename="/usr/bin/make", sid=ROOT, uid=1000)
    t += 200 * US
    while budget[0] > 0:
        budget[0] -= 1
        sh = alloc()
        t += rnd.randrange(20 * US, 300 * US)
        ev: list[Event] = [Fork(t, wpid, sh, ROOT, ROOT, ROOT)]
        pgid, sid = ROOT, ROOT
        tt = t + rnd.randrange(5 * US, 40 * US)
        if rnd.random() < 0.5:
            pgid = sh
            ev.append(SetPGID(tt, sh, wpid, sh, sh))
            tt += 3 * US
        for _ in range(storm):
            ev.append(SetPGID(tt, sh, wpid, pgid, sh))
            tt += 1 * US
        if rnd.random() < 0.1:
            pgid = sid = sh
            ev.append(SetSID(tt, sh, wpid, sh, sh))
            tt += 3 * US
        n = rnd.randrange(1, 9)
        cmd = f"cd tests/t{n} && ./run.sh --case {sh} --timeout 30"
        chain = [["/usr/bin/env", "bash", "-c", cmd], ["/bin/bash", "-c", cmd]]
        if rnd.random() < 0.5:
            chain.append(["./run.sh", "--case", str(sh), "--timeout", "30"])
        for i, argv in enumerate(chain):
            if i > 0 or rnd.random() < 0.6:
                for d in ("/usr/local/sbin", "/usr/local/bin")[: rnd.randrange(1, 3)]:
                    ev.append(ExecFailed(tt, sh, f"{d}/{argv[0].rsplit('/', 1)[-1]}", 2))
                    tt += 2 * US
            ev.append(Exec.from_argv(tt, sh, wpid, pgid, argv, filename=argv[0], sid=sid,
                                     uid=1000))
            tt += rnd.randrange(30 * US, 200 * US)
        kids = []
        for _ in range(rnd.choice((0, 1, 1, 2))):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            k = alloc()
            kt = tt
            tt += rnd.randrange(10 * US, 50 * US)
            argv = [*rnd.choice(TOOLS), f"src/file{k}.c"]
            kev: list[Event] = [Fork(kt, sh, k, pgid, pgid, sid)]
            if rnd.random() < 0.5:
                kev.append(ExecFailed(kt + 20 * US, k, "/usr/local/bin/tool", 2))
            kev.append(Exec.from_argv(kt + 30 * US, k, sh, pgid, argv, filename=argv[0],
                                      sid=sid, uid=1000))
            kend = kt + 30 * US + int(rnd.expovariate(1 / (2 * MS))) + 50 * US
            r = rnd.random()
            if r < 0.003:
                reserved.add(k)  # never exits
            else:
                code, sig = (0, None) if r < 0.95 else (1, None) if r < 0.985 else (None, 9)
                kev.append(Exit(kend, k, sh, pgid, code, sig))
            tt = max(tt, kend + 10 * US)
            kids.append(kev)
        r = rnd.random()
        code, sig = (0, None) if r < 0.94 else (2, None) if r < 0.99 else (None, 15)
        ev.append(Exit(tt + 20 * US, sh, wpid, pgid, code, sig))
        for kev in kids:
            ev.extend(kev)
        ev.sort(key=lambda e: e.timestamp)
        yield from ev
        t = tt + 30 * US
    yield Exit(t + 100 * US, wpid, ROOT, ROOT, 0, None)


def generate(path: Path, events: int = 1_000_000, seed: int = 1, storm: int = 0) -> int:
    """Write a synthetic recording of about `events` events; returns the process count."""
    import heapq

    rnd = random.Random(seed)
    per_process = 5.85 + storm
    budget = [int(events / per_process)]
    procs = budget[0]
    w = RecordingWriter(path)
    w.write_header(Header(version="bench", backend="synthetic", kernel="6.18.0",
                          hostname="bench", command=["bash", "ci.sh"], root_pid=ROOT,
                          raw=False, start_time="2025-01-01T00:00:00+00:00"))
    head: list[Event] = [
        Fork(1 * MS, 999, ROOT, 999, 999, 999),
        Exec.from_argv(1 * MS + 50 * US, ROOT, 999, ROOT, ["bash", "ci.sh"],
                       filename="/usr/bin/bash", sid=ROOT, uid=1000),
    ]
    w.write_many(head)
    streams = [_worker(i, random.Random(rnd.random()), budget, storm) for i in range(WORKERS)]
    batch: list[Event] = []
    last = 0
    n = 0
    for ev in heapq.merge(*streams, key=lambda e: e.timestamp):
        batch.append(ev)
        last = ev.timestamp
        n += 1
        if n % 250_000 == 0:
            batch.append(Lost(last, 3, 0))
        if len(batch) >= 10_000:
            w.write_many(batch)
            batch.clear()
    batch.append(Exit(last + MS, ROOT, 999, ROOT, 0, None))
    batch.append(End(last + 2 * MS, "exited", [], 0, 3 * (n // 250_000)))
    w.write_many(batch)
    w.close()
    return procs + WORKERS + 1


# ---------------------------------------------------------------------------
# Timing, each run in a fresh interpreter so peak RSS is that run's alone.

_PARSE = """
import orjson
loads = orjson.loads
with open(ARGS[0], 'rb') as f:
    for line in f:
        loads(line)
"""

_ANALYZE = """
from pathlib import Path
from proctrace_bcc.analyze import analyze
analyze(ARGS[0], Path(ARGS[2]), ARGS[1], None)
"""

_WRAP = """
import json, resource, sys, time
ARGS = sys.argv[1:]
t0 = time.perf_counter()
exec(compile(CODE, "bench", "exec"))
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss": ru.ru_maxrss / 1024}), file=sys.stderr)
"""


def _generate(path: Path, events: int, storm: int = 0) -> int:
    """generate() in a child process: the memory it takes would otherwise count in every
    timed child's peak RSS (Linux carries the parent's over fork and exec)."""
    here = Path(__file__).resolve().parent
    code = (f"import sys; sys.path.insert(0, {str(here)!r}); from pathlib import Path; "
            f"from analyze_bench import generate; "
            f"print(generate(Path({str(path)!r}), {events}, storm={storm}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-1])


def _run(code: str, *args: str, tree: Path | None = None) -> dict[str, float]:
    """Wall and CPU seconds (inside the interpreter, start-up excluded) and peak RSS MiB;
    `tree`: the proctrace_bcc of that checkout instead of this one."""
    prog = _WRAP.replace("CODE", repr(code))
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    p = subprocess.run([sys.executable, "-c", prog, *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=False, env=env,
                       cwd=tree or Path(__file__).resolve().parent.parent)
    if p.returncode != 0:
        raise SystemExit(f"run failed ({p.returncode}): {p.stderr.strip()}")
    import json

    r: dict[str, float] = json.loads(p.stderr.strip().splitlines()[-1])
    return r


def _time(code: str, args: list[str], rounds: int) -> dict[str, float]:
    runs = [_run(code, *args) for _ in range(rounds)]
    return {"wall": statistics.median(r["wall"] for r in runs),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "rss": max(r["rss"] for r in runs)}


def _instructions(path: Path, mode: str, out: str, tree: Path | None = None) -> int:
    """Instructions one `analyze -d mode` run executes, start-up and imports included
    (valgrind's cachegrind): a count the machine's noise does not change."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    here = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONHASHSEED="0")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    code = _ANALYZE.replace("ARGS[0]", repr(str(path))).replace("ARGS[1]", repr(mode))
    p = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                        "--cachegrind-out-file=/dev/null", sys.executable, "-c",
                        code.replace("ARGS[2]", repr(out))],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       check=False, env=env, cwd=tree or here)
    refs = [ln for ln in p.stderr.splitlines() if "I refs:" in ln or "I   refs:" in ln]
    if p.returncode != 0 or not refs:
        raise SystemExit(f"valgrind run failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return int(refs[-1].split(":")[1].replace(",", ""))


def _against(other: Path, path: Path, modes: list[str], out: str, rounds: int,
             instructions: bool = False) -> None:
    """Each mode run by this checkout and by `other` (another checkout of the project, e.g.
    a `git worktree` of an older commit) in turns, `rounds` times each: the medians and
    this one's CPU time relative to the other's (the machine's noise hits both alike)."""
    here = Path(__file__).resolve().parent.parent
    print(f"this checkout ({here}) against {other}, {rounds} interleaved rounds:")
    for mode in modes:
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            mine.append(_run(_ANALYZE, str(path), mode, out)["cpu"])
            theirs.append(_run(_ANALYZE, str(path), mode, out, tree=other)["cpu"])
        a, b = statistics.median(mine), statistics.median(theirs)
        print(f"  analyze -d {mode:12} cpu {a:6.2f} s against {b:6.2f} s: {a / b:5.2f}x "
              f"(min {min(mine):.2f} against {min(theirs):.2f}: {min(mine) / min(theirs):.2f}x)")
        if instructions:
            i, j = _instructions(path, mode, out), _instructions(path, mode, out, other)
            print(f"  {'':25} instructions {i / 1e9:6.2f} G against {j / 1e9:6.2f} G: "
                  f"{i / j:5.3f}x")


def _row(name: str, r: dict[str, float], base: dict[str, float]) -> str:
    return (f"{name:30} wall {r['wall']:6.2f} s ({r['wall'] / base['wall']:4.2f}x)  "
            f"cpu {r['cpu']:6.2f} s ({r['cpu'] / base['cpu']:4.2f}x)  "
            f"peak RSS {r['rss']:6.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the recording here and keep it")
    ap.add_argument("--modes", default="sequential,by-process,tree")
    ap.add_argument("--no-storm", action="store_true", help="skip the 4x-events comparison")
    ap.add_argument("--against", type=Path, metavar="CHECKOUT",
                    help="only compare each mode with another checkout of the project "
                         "(`git worktree add /tmp/before REV`), in turns")
    ap.add_argument("--instructions", action="store_true",
                    help="with --against: also count each run's instructions (valgrind), "
                         "which a noisy machine does not change")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="proctrace-bench-")
    path = a.keep or Path(tmp.name) / "bench.ndjson"
    t0 = time.perf_counter()
    procs = _generate(path, a.events)
    size = path.stat().st_size
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)
    print(f"recording: {path} ({lines - 1:,} events, ~{procs:,} processes, "
          f"{size / 2**20:.0f} MiB; generated in {time.perf_counter() - t0:.1f} s)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of {a.rounds} runs")
    out = str(Path(tmp.name) / "out")
    if a.against is not None:
        _against(a.against.resolve(), path, a.modes.split(","), out, a.rounds, a.instructions)
        tmp.cleanup()
        return
    base = _time(_PARSE, [str(path)], a.rounds)
    print(_row("orjson parse (floor)", base, base))
    for mode in a.modes.split(","):
        print(_row(f"analyze -d {mode}", _time(_ANALYZE, [str(path), mode, out], a.rounds),
                   base))
    if not a.no_storm:
        storm = Path(tmp.name) / "storm.ndjson"
        sprocs = _generate(storm, a.events * 4, storm=20)
        with open(storm, "rb") as f:
            slines = sum(1 for _ in f)
        print(f"storm recording: {slines - 1:,} events ({(slines - 1) / (lines - 1):.1f}x), "
              f"~{sprocs:,} processes ({sprocs / procs:.2f}x): 20 extra SetPGID per shell")
        sbase = _time(_PARSE, [str(storm)], 1)
        print(_row("storm: orjson parse", sbase, sbase))
        for mode in a.modes.split(","):
            print(_row(f"storm: analyze -d {mode}",
                       _time(_ANALYZE, [str(storm), mode, out], 1), sbase))
    tmp.cleanup()


if __name__ == "__main__":
    main()
