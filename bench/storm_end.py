"""Does a recording of parallel spawn storms end, with every process accounted?

    sudo .venv/bin/python bench/storm_end.py [--backend bpftrace] [--runs 5]
        [--n 2000] [--parallel 2] [--grace 20] [--hogs 0] [--stall-ms 0]
        [--run-pct 100] [--starve bpftrace|recorder] [--pythonpath DIR]

Issue 4: under 2 parallel storms of /bin/true, bpftrace delivered events after
the recorder's reordering watermark had passed them; a fork processed after its
child's exit left the child "alive" and `record` never stopped.  This runs
``record -- sh bench/workloads/storm.sh N P`` RUNS times and reports per run:
whether `record` ended on its own (it gets SIGTERM GRACE s after the workload
itself finished), the recording's forks, execs of /bin/true and exits, how many
execs' processes have no Exit, the End's `running` list and lost count, and the
timestamp inversions in the file (lines whose timestamp is below an earlier
line's; the largest gap in ms), and the CPU time `record` itself and its
bpftrace used (sampled from /proc every 0.1 s until they exit).  ``--hogs H`` runs H busy loops beside each
run (the failure needs a loaded machine: bpftrace must fall behind);
``--stall-ms MS`` and ``--run-pct P`` make it fall behind for sure, as a
tracer starved by other work does: bpftrace (the recorder's child) is stopped
(SIGSTOP) for MS ms once a second, and otherwise let run only P% of every
20 ms, so both CPUs' buffers fill and it reads them one after the other, slowly.
``--starve recorder`` does that to `record` itself instead: bpftrace then
blocks on its full output pipe in the middle of one CPU's buffer.
``--pythonpath DIR`` runs another checkout
(e.g. ``git archive HEAD~1 | tar -x -C /tmp/before``) for a before/after.
Run it under ``flock /tmp/proctrace-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
STORM = ROOT / "bench" / "workloads" / "storm.sh"
TRUE = "/bin/true"


def analyse(path: Path) -> dict[str, Any]:
    """Counts, unmatched execs and timestamp inversions of one recording."""
    forks = execs = exits = 0
    exited: set[int] = set()
    exec_pids: list[int] = []
    end: dict[str, Any] | None = None
    inversions = 0
    worst = 0
    top = -1
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            ((kind, v),) = orjson.loads(line).items()
            if kind == "Header":
                continue
            ts = v.get("timestamp", 0)
            if kind != "End":
                if ts < top:
                    inversions += 1
                    worst = max(worst, top - ts)
                top = max(top, ts)
            if kind == "Fork":
                forks += 1
            elif kind == "Exec":
                if v.get("filename") == TRUE:
                    execs += 1
                    exec_pids.append(v["pid"])
            elif kind == "Exit":
                exits += 1
                exited.add(v["pid"])
            elif kind == "End":
                end = v
    return {
        "forks": forks, "true_execs": execs, "exits": exits,
        "execs_without_exit": sum(1 for p in exec_pids if p not in exited),
        "end_reason": end.get("reason") if end else None,
        "end_running": len(end.get("running") or []) if end else None,
        "lost": end.get("lost") if end else None,
        "inversions": inversions, "worst_inversion_ms": round(worst / 1e6, 1),
    }


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def find_bpftrace(recorder: int) -> int | None:
    for pid in children(recorder):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "bpftrace":
                return pid
    return None


def staller(recorder: subprocess.Popen[bytes], rec: Path, stall_s: float, run_frac: float,
            target: str, stop: threading.Event, count: list[int]) -> None:
    """Starve the recorder's bpftrace: stopped stall_s once a second, and running only
    run_frac of every 20 ms in between; from when the recording has begun (bpftrace
    stopped while it loads its programs fails to load them)."""
    period = 0.02
    pid = None
    while not stop.wait(0.05):
        with contextlib.suppress(OSError):
            if rec.stat().st_size > 0:
                break
    next_stall = time.monotonic() + 1.0

    def stopped_for(seconds: float) -> None:
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    while not stop.is_set():
        if pid is None:
            pid = find_bpftrace(recorder.pid) if target == "bpftrace" else recorder.pid
            if pid is None:
                time.sleep(0.05)
            continue
        try:
            now = time.monotonic()
            if stall_s > 0 and now >= next_stall:
                stopped_for(stall_s)
                count[0] += 1
                next_stall = time.monotonic() + 1.0
            elif run_frac < 1:
                stopped_for(period * (1 - run_frac))
                time.sleep(period * run_frac)
            else:
                time.sleep(0.05)
        except OSError:  # gone (`bpftrace --version` comes first): look again
            pid = None


def cpu_s(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None: gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sampler(recorder: subprocess.Popen[bytes], stop: threading.Event,
            out: dict[str, float]) -> None:
    """The last CPU times seen of `record` and of its bpftrace."""
    bpftrace: int | None = None
    while not stop.wait(0.1):
        v = cpu_s(recorder.pid)
        if v is not None:
            out["recorder_cpu_s"] = v
        if bpftrace is None:
            bpftrace = find_bpftrace(recorder.pid)
        elif (v := cpu_s(bpftrace)) is not None:
            out["bpftrace_cpu_s"] = v
        else:  # gone (`bpftrace --version` comes first): look again
            bpftrace = None


def one_run(backend: str, n: int, par: int, grace: float, tmp: Path,
            pythonpath: str, hogs: int, stall_ms: int, run_pct: int,
            target: str) -> dict[str, Any]:
    rec = tmp / "rec.ndjson"
    done = tmp / "done"
    for p in (rec, done):
        p.unlink(missing_ok=True)
    # The workload touches `done` when it finished: the recorder has GRACE s after it.
    inner = ["/bin/sh", "-c", f'/bin/sh "$1" {n} {par}; : > "$2"', "sh", str(STORM), str(done)]
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, "-m", "proctrace_bcc", "record", "-q", "--as-root", "-o", str(rec),
           "--backend", backend, "--", *inner]
    busy = [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(hogs)]
    try:
        return _run(cmd, env, done, rec, grace, stall_ms / 1000, run_pct / 100, target)
    finally:
        for b in busy:
            b.kill()
            b.wait()


def _run(cmd: list[str], env: dict[str, str], done: Path, rec: Path,
         grace: float, stall_s: float, run_frac: float, target: str) -> dict[str, Any]:
    t0 = time.monotonic()
    # cwd: not the checkout (`python -m` puts the cwd first on sys.path, before PYTHONPATH)
    proc = subprocess.Popen(cmd, env=env, cwd=rec.parent, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    stop = threading.Event()
    stalls = [0]
    cpu: dict[str, float] = {}
    threading.Thread(target=sampler, args=(proc, stop, cpu), daemon=True).start()
    if stall_s > 0 or run_frac < 1:
        threading.Thread(target=staller, args=(proc, rec, stall_s, run_frac, target, stop, stalls),
                         daemon=True).start()
    finished: float | None = None
    hung = False
    while proc.poll() is None:
        time.sleep(0.2)
        now = time.monotonic()
        if finished is None and done.exists():
            finished = now
        if (finished is not None and now - finished > grace) or now - t0 > 600:
            hung = True
            proc.send_signal(signal.SIGTERM)  # record writes its End, then exits
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            break
    end = time.monotonic()
    stop.set()
    proc.wait()
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    out: dict[str, Any] = {"ended_on_its_own": not hung, "rc": proc.returncode,
                           "wall_s": round(end - t0, 2),
                           "shutdown_s": round(end - finished, 2) if finished else None,
                           "stalls": stalls[0],
                           **{k: round(v, 2) for k, v in cpu.items()}}
    if rec.exists():
        out.update(analyse(rec))
    if err:
        out["stderr"] = err.splitlines()[-1][:200]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="bpftrace")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--grace", type=float, default=20.0)
    ap.add_argument("--hogs", type=int, default=0)
    ap.add_argument("--stall-ms", type=int, default=0)
    ap.add_argument("--run-pct", type=int, default=100)
    ap.add_argument("--starve", choices=("bpftrace", "recorder"), default="bpftrace")
    ap.add_argument("--pythonpath", default=str(ROOT))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (it runs record)", file=sys.stderr)
        return 2
    print(f"# {args.runs} x record --backend {args.backend} -- storm.sh {args.n} "
          f"{args.parallel}, {args.hogs} busy loops, stalls of {args.stall_ms} ms, "
          f"{args.starve} running {args.run_pct}% "
          f"(code: {args.pythonpath}; "
          f"load {os.getloadavg()[0]:.2f})")
    stuck = 0
    with tempfile.TemporaryDirectory(prefix="storm-end-") as d:
        for i in range(args.runs):
            r = one_run(args.backend, args.n, args.parallel, args.grace, Path(d),
                        args.pythonpath, args.hogs, args.stall_ms, args.run_pct, args.starve)
            stuck += not r["ended_on_its_own"]
            print(f"run {i + 1}: " + orjson.dumps(r).decode(), flush=True)
    print(f"# {stuck} of {args.runs} recordings did not end on their own")
    return 1 if stuck else 0


if __name__ == "__main__":
    sys.exit(main())
