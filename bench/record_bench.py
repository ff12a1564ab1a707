"""Recorder benchmarks (issue 3): overhead, completeness and start-up of `record`.

    sudo .venv/bin/python bench/record_bench.py [--runs N] [--quick]
        [--only storm|configure|completeness|fds|env|startup] [--json PATH]

Every figure is a ratio (or a count) measured in the same run.  Modes run
interleaved, in rotation: untraced, bcc, bpftrace, strace, untraced, bcc, ...
and each figure is the median over the rotations.  The traced command is
always ``timed OUT WORKLOAD...`` (bench/workloads/timed.c), which measures the
workload from inside the traced tree, so the recorder's start-up and shutdown
are not in the overhead ratio; they are reported on their own.

Sections (method and measured figures: docs/benchmarks.md):

- ``storm``: a fork+exec storm (bench/workloads/storm.sh: a dash loop running
  /bin/true N times), one loop, then 2 loops in parallel; then ``dd bs=1``
  (no spawns: what every syscall on the machine pays while recording);
- ``configure``: GNU ``./configure`` of a Debian source package (default
  ``hello``), fetched once through a private apt configuration into
  .cache/bench (the host's apt setup is never touched);
- ``completeness``: processes in the recording against processes spawned,
  P = 1, 2, 4, 8 parallel storms; then where losses begin: a fixed-rate
  spawner (bench/workloads/spawn.c) against small perf buffers;
- ``fds``: what ``record --fds`` adds (BCC): untraced, bcc and bcc --fds in
  rotation on the two storms, on a storm whose processes hold ~100 and ~250
  descriptors (bench/workloads/holdfds.c), and on ``./configure``; the
  recording's size per exec and how many execs carry their fd table;
- ``env``: what ``record --env tests`` (the runners' set) costs (BCC): untraced,
  bcc and bcc --env tests in rotation on the two storms and ``./configure``
  (--fds-runs, --fds-no-configure apply), paired bcc --env tests / bcc ratios;
- ``startup``: time from launching ``record`` to the first instruction of
  CMD, per backend, and (BCC) a breakdown of where it goes
  (bench/workloads/startup_profile.py); then the two costs of syscall
  tracepoints on their own (bench/workloads/tracepoint_costs.py).

A backend that does not work here (bpftrace while it is unfinished, strace
not installed) is reported as not available, with the reason.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "bench" / "workloads"
CACHE = ROOT / ".cache" / "bench"
BIN = CACHE / "bin"
PY = sys.executable
TRUE = "/bin/true"
SECTIONS = ("storm", "configure", "completeness", "fds", "env", "startup")
RECORDERS = ("bcc", "bpftrace")
MODES = ("untraced", "bcc", "bpftrace", "strace")
FDS_MODES = ("untraced", "bcc", "bcc-fds")  # "<backend>-fds": `record --fds`
# "<backend>-env": `record --env tests` (the test runners' variables; off by default)
ENV_MODES = ("untraced", "bcc", "bcc-env")


def backend_of(mode: str) -> str:
    """The recorder behind a mode ("bcc-fds", "bcc-env" -> "bcc"), or the mode itself."""
    return mode.removesuffix("-fds").removesuffix("-env")
END_GRACE = 20.0  # a tracer still running this long after its workload ended is stopped


# ---------------------------------------------------------------------------
# Helpers: C tools, the configure source tree


def build_helpers() -> dict[str, Path]:
    """Compile timed.c and spawn.c into .cache/bench/bin (again when the source changed)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("record_bench: a C compiler (cc) is needed for the timing helpers")
    BIN.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("timed", "spawn", "holdfds"):
        src, exe = WORKLOADS / f"{name}.c", BIN / name
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
        out[name] = exe
    return out


def debian_mirror() -> tuple[str, str]:
    """(URI, suite) of the Debian archive this machine's apt already uses."""
    cands: list[Path] = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        cands += sorted(d.glob("*.sources")) + sorted(d.glob("*.list"))
    for p in cands:
        if not p.is_file():
            continue
        text = p.read_text(errors="replace")
        if p.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#"):
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.strip()
                uri = fields.get("uris", "").split()
                suites = fields.get("suites", "").split()
                if uri and suites and uri[0].rstrip("/").endswith("/debian"):
                    return uri[0], suites[0]
        else:
            for line in text.splitlines():
                parts = [w for w in line.split() if not w.startswith("[")]
                if len(parts) >= 3 and parts[0] == "deb" and parts[1].rstrip("/").endswith(
                    "/debian"
                ):
                    return parts[1], parts[2]
    sys.exit("record_bench: no Debian mirror found in /etc/apt/sources.list(.d)")


def configure_tree(package: str) -> Path:
    """The unpacked source of `package` under .cache/bench/src (fetched once, privately)."""
    src = CACHE / "src"
    dest = src / package
    if (dest / "configure").exists():
        return dest
    apt = CACHE / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    uri, suite = debian_mirror()
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    signed = f"[signed-by={keyring}] " if keyring.exists() else ""
    (apt / "sources.list").write_text(f"deb-src {signed}{uri} {suite} main\n")
    opts = [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]
    print(f"record_bench: fetching the source of {package} from {uri} {suite} "
          "(private apt configuration in .cache/bench/apt)", file=sys.stderr)
    subprocess.run(["apt-get", "-q", *opts, "update"], check=True, stdout=subprocess.DEVNULL)
    dl = src / "download"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "-q", *opts, "source", "--download-only", package],
                   check=True, cwd=dl, stdout=subprocess.DEVNULL)
    dsc = sorted(dl.glob(f"{package}_*.dsc"))
    if not dsc:
        sys.exit(f"record_bench: apt-get source {package} left no .dsc in {dl}")
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["dpkg-source", "-x", str(dsc[-1]), str(dest)], check=True,
                   stdout=subprocess.DEVNULL)
    if not (dest / "configure").exists():
        sys.exit(f"record_bench: {package} has no ./configure")
    return dest


# ---------------------------------------------------------------------------
# One run


@dataclass
class Run:
    mode: str
    ok: bool
    error: str | None = None
    inner_s: float | None = None  # workload wall time, measured inside the traced tree
    inner_cpu_s: float | None = None  # CPU of the workload tree (user+sys)
    outer_s: float = 0.0  # launch of the tracer to its exit
    outer_cpu_s: float = 0.0  # CPU of the tracer process and everything it reaped
    startup_s: float | None = None  # launch -> first instruction of CMD
    shutdown_s: float | None = None  # CMD reaped -> tracer exited
    counts: dict[str, int] = field(default_factory=dict)  # recording: events by kind, ...
    header_startup_s: float | None = None  # what the recorder wrote in its Header
    never_ended: bool = False  # the tracer had to be stopped (see Runner._watch)
    rec_bytes: int = 0  # size of the recording file


def count_recording(path: Path) -> tuple[dict[str, int], float | None]:
    kinds: Counter[str] = Counter()
    startup = None
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            d = orjson.loads(line)
            ((kind, v),) = d.items()
            kinds[kind] += 1
            if kind == "Exec":
                if v.get("filename") == TRUE:
                    kinds["true_execs"] += 1
                if v.get("fds") is not None:
                    kinds["execs_with_fds"] += 1
                    kinds["fd_entries"] += len(v["fds"])
            elif kind == "Lost":
                kinds["lost"] += int(v.get("count") or 0)
            elif kind == "End":
                kinds["end_lost"] += int(v.get("lost") or 0)
                kinds["end_running"] += len(v.get("running") or [])
            elif kind == "Header":
                startup = (v.get("options") or {}).get("startup_s")
    kinds.setdefault("lost", 0)
    return dict(kinds), startup


class Runner:
    def __init__(self, tools: dict[str, Path], tmp: Path, timeout: float) -> None:
        self.timed = tools["timed"]
        self.spawn = tools["spawn"]
        self.holdfds = tools["holdfds"]
        self.tmp = tmp
        self.unavailable: dict[str, str] = {}
        self.timeout = timeout
        self.current: subprocess.Popen[bytes] | None = None
        self.fixed_cpu: dict[str, float] = {}

    def command(self, mode: str, inner: list[str], rec: Path,
                buffer_pages: int | None) -> list[str]:
        if mode == "untraced":
            return inner
        if mode == "strace":
            return ["strace", "-f", "-o", "/dev/null", "--", *inner]
        cmd = [PY, "-m", "proctrace_bcc", "record", "-q", "--as-root", "-o", str(rec),
               "--backend", backend_of(mode)]
        if mode.endswith("-fds"):
            cmd.append("--fds")
        if mode.endswith("-env"):
            cmd += ["--env", "tests"]
        if buffer_pages is not None:
            cmd += ["--buffer-pages", str(buffer_pages)]
        return [*cmd, "--", *inner]

    def run(self, mode: str, workload: list[str], cwd: Path | None = None,
            buffer_pages: int | None = None) -> Run:
        res, rec, err = self.tmp / "timed.out", self.tmp / "rec.ndjson", self.tmp / "stderr"
        for p in (res, rec):
            p.unlink(missing_ok=True)
        cmd = self.command(mode, [str(self.timed), str(res), *workload], rec, buffer_pages)
        with err.open("wb") as ef:
            launch = time.monotonic_ns()
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=ef)
            self.current = proc
            hung, done = threading.Event(), threading.Event()
            watcher = threading.Thread(target=self._watch, args=(proc, res, hung, done),
                                       daemon=True)
            watcher.start()
            _, status, ru = os.wait4(proc.pid, 0)
            end = time.monotonic_ns()
            done.set()
            self.current = None
            proc.returncode = os.waitstatus_to_exitcode(status)
        r = Run(mode, ok=True, outer_s=(end - launch) / 1e9,
                outer_cpu_s=ru.ru_utime + ru.ru_stime)
        if res.exists():
            start_ns, end_ns, wstatus, user_us, sys_us = (
                int(x) for x in res.read_text().split()
            )
            r.inner_s = (end_ns - start_ns) / 1e9
            r.inner_cpu_s = (user_us + sys_us) / 1e6
            r.startup_s = (start_ns - launch) / 1e9
            r.shutdown_s = (end - end_ns) / 1e9
            if wstatus != 0:
                r.ok, r.error = False, f"workload exit status {wstatus:#x}"
        else:
            r.ok, r.error = False, "the traced command never ran"
        if hung.is_set():
            # The workload's own timing is still valid when it finished: keep it, and
            # report the tracer that did not end on its own.
            r.never_ended = True
        elif proc.returncode != 0 and r.ok:
            r.ok, r.error = False, f"{cmd[0]} exited {proc.returncode}"
        if backend_of(mode) in RECORDERS:
            if rec.exists():
                r.rec_bytes = rec.stat().st_size
                r.counts, r.header_startup_s = count_recording(rec)
                if r.ok and "End" not in r.counts:
                    r.ok, r.error = False, "recording has no End event"
            elif r.ok:
                r.ok, r.error = False, "no recording written"
        if not r.ok:
            tail = err.read_text(errors="replace").strip().splitlines()
            if tail:
                r.error = f"{r.error}: {tail[-1][:300]}"
        return r

    def _watch(self, proc: subprocess.Popen[bytes], res: Path, hung: threading.Event,
               done: threading.Event) -> None:
        """Stop a tracer that does not end: END_GRACE s after the workload finished
        (`timed` wrote its result) or `timeout` s after the launch.  SIGTERM first
        (`record` then writes its End), SIGKILL 10 s later."""
        t0 = time.monotonic()
        finished: float | None = None
        while not done.wait(0.5):
            now = time.monotonic()
            if finished is None and res.exists():
                finished = now
            if (finished is not None and now - finished > END_GRACE) or now - t0 > self.timeout:
                hung.set()
                proc.send_signal(signal.SIGTERM)
                if not done.wait(10.0):
                    proc.kill()
                return

    def probe(self, modes: list[str]) -> list[str]:
        """Modes that work here; the others go to self.unavailable with the reason."""
        ok = []
        for m in modes:
            if m == "strace" and shutil.which("strace") is None:
                self.unavailable[m] = "strace is not installed"
                continue
            if backend_of(m) in RECORDERS:
                r = self.run(m, [TRUE])
                if not r.ok:
                    self.unavailable[m] = r.error or "failed"
                    continue
                # What the tracer costs with (almost) nothing to trace: start-up, BPF
                # compile, shutdown.  Subtracted to get the CPU spent per traced event.
                self.fixed_cpu[m] = r.outer_cpu_s - (r.inner_cpu_s or 0.0)
            ok.append(m)
        return ok


# ---------------------------------------------------------------------------
# Statistics


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(runs: dict[str, list[Run]], fixed_cpu: dict[str, float],
              base: str = "untraced") -> dict[str, Any]:
    """Per mode: medians, ratio to the untraced median, paired ratios, losses."""
    base_runs = runs.get(base, [])
    base_med = med([r.inner_s for r in base_runs if r.ok and r.inner_s is not None])
    base_cpu = med([r.inner_cpu_s for r in base_runs if r.ok and r.inner_cpu_s is not None])
    out: dict[str, Any] = {}
    for mode, rs in runs.items():
        good = [r for r in rs if r.ok and r.inner_s is not None]
        s: dict[str, Any] = {"runs": len(rs), "failed": [r.error for r in rs if not r.ok]}
        if good:
            inner = [r.inner_s for r in good if r.inner_s is not None]
            s["median_s"] = med(inner)
            s["min_s"], s["max_s"] = min(inner), max(inner)
            if base_med:
                s["ratio"] = s["median_s"] / base_med
                # Noise on a shared machine only ever adds time: best against best.
                base_min = min(r.inner_s for r in base_runs if r.ok and r.inner_s)
                s["best_ratio"] = s["min_s"] / base_min
                paired = [
                    r.inner_s / b.inner_s
                    for r, b in zip(rs, base_runs, strict=False)
                    if r.ok and b.ok and r.inner_s and b.inner_s
                ]
                if paired:
                    s["paired_ratio_median"] = med(paired)
                    s["paired_ratio_min"], s["paired_ratio_max"] = min(paired), max(paired)
            cpu = med([r.inner_cpu_s for r in good if r.inner_cpu_s is not None])
            if base_cpu and cpu is not None:
                s["workload_cpu_ratio"] = cpu / base_cpu
            # CPU of the tracer itself: everything it reaped minus the workload tree.
            s["tracer_cpu_s"] = med([r.outer_cpu_s - (r.inner_cpu_s or 0.0) for r in good])
            if mode in fixed_cpu:
                s["tracer_cpu_marginal_s"] = s["tracer_cpu_s"] - fixed_cpu[mode]
            s["startup_s"] = med([r.startup_s for r in good if r.startup_s is not None])
            s["shutdown_s"] = med([r.shutdown_s for r in good if r.shutdown_s is not None])
        s["never_ended"] = sum(1 for r in rs if r.never_ended)
        if backend_of(mode) in RECORDERS:
            s["lost_total"] = sum(r.counts.get("lost", 0) for r in rs)
            for k in ("Exec", "Exit", "Fork", "true_execs", "execs_with_fds", "fd_entries"):
                vals = [r.counts.get(k, 0) for r in good]
                if vals:
                    s[f"{k}_min"], s[f"{k}_max"] = min(vals), max(vals)
            per_exec = [r.rec_bytes / r.counts["Exec"] for r in good if r.counts.get("Exec")]
            if per_exec:
                s["rec_bytes_per_exec"] = med(per_exec)
        out[mode] = s
    return out


def fmt(x: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def print_overhead(title: str, summary: dict[str, Any], unavailable: dict[str, str],
                   expect_true: int | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'mode':<9} {'median':>8} {'ratio':>7} {'best':>6} {'paired min-max':>15} "
          f"{'wl cpu':>7} {'tracer cpu':>10} {'marginal':>8} {'startup':>8} {'shutdown':>8} "
          f"{'lost':>5} {'procs recorded':>15}")
    for mode, s in summary.items():
        if "median_s" not in s:
            print(f"  {mode:<9} failed: {s['failed'][:1]}")
            continue
        rng = (f"{s['paired_ratio_min']:.3f}-{s['paired_ratio_max']:.3f}"
               if "paired_ratio_min" in s else "-")
        procs = "-"
        if backend_of(mode) in RECORDERS:
            if expect_true is not None:
                procs = f"{s.get('true_execs_min', 0)}/{expect_true}"
            else:
                procs = f"{s.get('Exec_min', 0)}-{s.get('Exec_max', 0)} execs"
        print(f"  {mode:<9} {fmt(s['median_s'], '.2f', 's'):>8} {fmt(s.get('ratio'), '.3f'):>7} "
              f"{fmt(s.get('best_ratio'), '.3f'):>6} {rng:>15} {fmt(s.get('workload_cpu_ratio'), '.3f'):>7} "
              f"{fmt(s.get('tracer_cpu_s'), '.2f', 's'):>10} "
              f"{fmt(s.get('tracer_cpu_marginal_s'), '.2f', 's'):>8} "
              f"{fmt(s.get('startup_s'), '.2f', 's'):>8} {fmt(s.get('shutdown_s'), '.2f', 's'):>8} "
              f"{s.get('lost_total', '-')!s:>5} {procs:>15}")
        if s["failed"]:
            print(f"  {'':<9} {len(s['failed'])} failed run(s): {s['failed'][0]}")
        if s["never_ended"]:
            print(f"  {'':<9} {s['never_ended']} of {s['runs']} run(s) never ended on their own: "
                  f"stopped {END_GRACE:g}s after the workload (timings kept)")
    for mode, why in unavailable.items():
        print(f"  {mode:<9} not available: {why}")


# ---------------------------------------------------------------------------
# Sections


def rotate(runner: Runner, modes: list[str], workload: list[str], runs: int,
           cwd: Path | None = None) -> dict[str, list[Run]]:
    """`runs` rotations through `modes` (one warm-up of the first mode, discarded)."""
    runner.run(modes[0], workload, cwd)
    out: dict[str, list[Run]] = {m: [] for m in modes}
    for i in range(runs):
        for m in modes:
            r = runner.run(m, workload, cwd)
            out[m].append(r)
            print(f"    [{i + 1}/{runs}] {m:<9} {fmt(r.inner_s, '.2f', 's')}"
                  f"{'  (never ended: stopped)' if r.never_ended else ''}"
                  f"{'' if r.ok else '  FAILED: ' + str(r.error)}", file=sys.stderr)
    return out


def section_storm(runner: Runner, modes: list[str], runs: int, n: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for par in (1, 2):
        label = f"storm_{par}x{n}"
        print(f"  {label}: {par} loop(s) x {n} /bin/true", file=sys.stderr)
        rs = rotate(runner, modes, ["/bin/sh", str(WORKLOADS / "storm.sh"), str(n), str(par)],
                    runs)
        s = summarize(rs, runner.fixed_cpu)
        res[label] = {"processes": n * par, "summary": s,
                      "runs": {m: [asdict(r) for r in v] for m, v in rs.items()}}
        print_overhead(f"Fork+exec storm: {par} loop(s) x {n} /bin/true "
                       f"({n * par} processes)", s, runner.unavailable, expect_true=n * par)
    # No spawns at all: while syscall tracepoints are attached, every syscall of every
    # process takes the kernel's slow path.  strace is left out (it stops dd twice per
    # syscall: that ratio says nothing about the other two).
    count = 500 * n
    label = f"syscalls_dd_{count}"
    print(f"  {label}: dd bs=1 count={count}", file=sys.stderr)
    dmodes = [m for m in modes if m != "strace"]
    rs = rotate(runner, dmodes, ["dd", "if=/dev/zero", "of=/dev/null", "bs=1",
                                 f"count={count}", "status=none"], runs)
    s = summarize(rs, runner.fixed_cpu)
    res[label] = {"syscalls": 2 * count, "summary": s,
                  "runs": {m: [asdict(r) for r in v] for m, v in rs.items()}}
    print_overhead(f"No spawns: dd bs=1 count={count} ({2 * count} read/write syscalls, "
                   "strace left out)", s, {})
    return res


def section_configure(runner: Runner, modes: list[str], runs: int,
                      package: str) -> dict[str, Any]:
    tree = configure_tree(package)
    print(f"  configure: {tree}", file=sys.stderr)
    rs = rotate(runner, modes, ["./configure"], runs, cwd=tree)
    s = summarize(rs, runner.fixed_cpu)
    print_overhead(f"./configure of Debian source package {package}", s, runner.unavailable)
    return {"package": package, "tree": str(tree), "summary": s,
            "runs": {m: [asdict(r) for r in v] for m, v in rs.items()}}


def section_completeness(runner: Runner, recorders: list[str], quick: bool) -> dict[str, Any]:
    n = 100 if quick else 1000
    out: dict[str, Any] = {"storms": [], "loss_onset": []}
    print(f"\nCompleteness: P parallel storms of {n} /bin/true each, default buffer")
    print(f"  {'backend':<9} {'P':>2} {'spawned':>8} {'rate/s':>8} {'execs':>13} "
          f"{'exits':>13} {'lost':>6}")
    for be in recorders:
        for par in (1, 2, 4, 8):
            r = runner.run(be, ["/bin/sh", str(WORKLOADS / "storm.sh"), str(n), str(par)])
            spawned = n * par
            # timed + sh exec; timed, sh, P subshells and every /bin/true exit
            exp_exec, exp_exit = spawned + 2, spawned + par + 2
            achieved = spawned / r.inner_s if r.inner_s else None
            row = {"backend": be, "parallel": par, "spawned": spawned, "ok": r.ok,
                   "error": r.error, "rate": achieved,
                   "true_execs": r.counts.get("true_execs", 0),
                   "execs": r.counts.get("Exec", 0), "expected_execs": exp_exec,
                   "exits": r.counts.get("Exit", 0), "expected_exits": exp_exit,
                   "lost": r.counts.get("lost", 0), "never_ended": r.never_ended}
            out["storms"].append(row)
            print(f"  {be:<9} {par:>2} {spawned:>8} {fmt(achieved, '.0f'):>8} "
                  f"{row['execs']:>6}/{exp_exec:<6} {row['exits']:>6}/{exp_exit:<6} "
                  f"{row['lost']:>6}{'  (never ended: stopped)' if r.never_ended else ''}"
                  f"{'' if r.ok else '  FAILED: ' + str(r.error)}")
    # Where loss begins: a fixed-rate spawner against small per-CPU perf buffers.
    pages_list = (1,) if quick else (1, 8, 256)
    rates = (250, 1000, 0) if quick else (125, 250, 500, 750, 1000, 1500, 0)
    secs = 0.5 if quick else 2.0
    print(f"\nLoss onset (bcc): spawn.c starts /bin/true at a fixed rate for ~{secs:g} s "
          "(0 = as fast as possible)")
    print(f"  {'pages':>5} {'target':>7} {'achieved/s':>10} {'execs':>13} {'lost':>6}")
    if "bcc" in recorders:
        for pages in pages_list:
            for rate in rates:
                count = int((rate or 2000) * secs)
                r = runner.run("bcc", [str(runner.spawn), str(rate), str(count), TRUE],
                               buffer_pages=pages)
                achieved = count / r.inner_s if r.inner_s else None
                row = {"buffer_pages": pages, "target_rate": rate, "spawned": count,
                       "ok": r.ok, "error": r.error, "rate": achieved,
                       "true_execs": r.counts.get("true_execs", 0),
                       "lost": r.counts.get("lost", 0), "never_ended": r.never_ended}
                out["loss_onset"].append(row)
                print(f"  {pages:>5} {rate or 'max'!s:>7} {fmt(achieved, '.0f'):>10} "
                      f"{row['true_execs']:>6}/{count:<6} {row['lost']:>6}"
                      f"{'  (never ended: stopped)' if r.never_ended else ''}"
                      f"{'' if r.ok else '  FAILED: ' + str(r.error)}")
        onset: dict[str, Any] = {}
        for pages in pages_list:
            lossy = [x["rate"] for x in out["loss_onset"]
                     if x["buffer_pages"] == pages and x["lost"] and x["rate"]]
            clean = [x["rate"] for x in out["loss_onset"]
                     if x["buffer_pages"] == pages and not x["lost"] and x["rate"]]
            onset[str(pages)] = {"max_clean_rate": max(clean) if clean else None,
                                 "min_lossy_rate": min(lossy) if lossy else None}
            print(f"  {pages} page(s)/CPU: no loss up to {fmt(onset[str(pages)]['max_clean_rate'], '.0f')}"
                  f" processes/s; first loss at {fmt(onset[str(pages)]['min_lossy_rate'], '.0f')}"
                  " processes/s")
        out["onset_summary"] = onset
    else:
        print("  bcc not available")
    return out


def section_fds(runner: Runner, modes: list[str], runs: int, n: int, configure_runs: int,
                package: str | None, held: list[int]) -> dict[str, Any]:
    """What `record --fds` adds: untraced, bcc, bcc --fds in rotation."""
    out: dict[str, Any] = {"workloads": {}}
    if "bcc" not in modes:
        print("\n--fds: bcc not available, nothing measured")
        return out
    fmodes = [m for m in FDS_MODES if m in modes or m == "bcc-fds"]
    if "bcc-fds" not in runner.probe(["bcc-fds"]):
        print(f"\n--fds: record --fds not available: {runner.unavailable.get('bcc-fds')}")
        return out
    out["fixed_cpu_s"] = {m: runner.fixed_cpu.get(m) for m in ("bcc", "bcc-fds")}
    storm = ["/bin/sh", str(WORKLOADS / "storm.sh")]
    half = max(1, n // 2)
    cases: list[tuple[str, str, list[str], Path | None, int | None, int]] = [
        (f"storm_1x{n}", f"storm: 1 loop x {n} /bin/true", [*storm, str(n), "1"], None, n,
         runs),
        (f"storm_2x{n}", f"storm: 2 loops x {n} /bin/true", [*storm, str(n), "2"], None,
         2 * n, runs),
    ]
    for k in held:
        cases.append((f"held{k}_storm_1x{half}",
                      f"{k} descriptors held: holdfds {k} + 1 loop x {half} /bin/true "
                      "(every process carries them)",
                      [str(runner.holdfds), str(k), *storm, str(half), "1"], None, half, runs))
    if package and configure_runs > 0:
        tree = configure_tree(package)
        cases.append(("configure", f"./configure of Debian source package {package}",
                      ["./configure"], tree, None, configure_runs))
    for label, title, workload, cwd, expect, nruns in cases:
        print(f"  fds {label}: {' '.join(workload[-4:])}", file=sys.stderr)
        rs = rotate(runner, fmodes, workload, nruns, cwd=cwd)
        s = summarize(rs, runner.fixed_cpu)
        vs = summarize({"bcc": rs["bcc"], "bcc-fds": rs["bcc-fds"]}, runner.fixed_cpu,
                       base="bcc")["bcc-fds"]
        out["workloads"][label] = {
            "title": title, "expected_true_execs": expect, "summary": s, "fds_vs_bcc": vs,
            "runs": {m: [asdict(r) for r in v] for m, v in rs.items()},
        }
        print_overhead(f"--fds, {title}", s, {}, expect_true=expect)
        print(f"  {'bcc-fds / bcc':<15} ratio {fmt(vs.get('ratio'), '.3f')}, best "
              f"{fmt(vs.get('best_ratio'), '.3f')}, paired "
              f"{fmt(vs.get('paired_ratio_min'), '.3f')}-{fmt(vs.get('paired_ratio_max'), '.3f')}"
              f" (median {fmt(vs.get('paired_ratio_median'), '.3f')}), workload cpu "
              f"{fmt(vs.get('workload_cpu_ratio'), '.3f')}")
        for m in ("bcc", "bcc-fds"):
            x = s.get(m, {})
            execs = x.get("Exec_min")
            fd_per_exec = (x["fd_entries_min"] / execs
                           if execs and x.get("fd_entries_min") is not None else None)
            print(f"  {m:<15} {fmt(x.get('rec_bytes_per_exec'), '.0f')} recording bytes per exec,"
                  f" execs {x.get('Exec_min', '-')}-{x.get('Exec_max', '-')}, with fd table "
                  f"{x.get('execs_with_fds_min', 0)}-{x.get('execs_with_fds_max', 0)}, "
                  f"{fmt(fd_per_exec, '.1f')} fds per exec, lost {x.get('lost_total', '-')}")
    print("  bpftrace --fds: not measured.  The bpftrace backend reads no descriptor table "
          "per exec;\n  --fds there only adds a /proc snapshot of the processes still alive "
          "when the recording\n  stops, after the workload (and its timing) ended: none are "
          "alive at the end of these workloads.")
    return out


def section_env(runner: Runner, modes: list[str], runs: int, n: int, configure_runs: int,
                package: str | None) -> dict[str, Any]:
    """What `record --env tests` costs (BCC): untraced, bcc and bcc --env tests in rotation on the two storms and on ./configure.  Every run gets
    PYTEST_CURRENT_TEST, so each exec also copies one value (as under pytest)."""
    out: dict[str, Any] = {}
    if "bcc" not in modes:
        print("\n--env: bcc not available, nothing measured")
        return out
    emodes = [m for m in ENV_MODES if m == "untraced" or m in runner.probe([m])]
    if "bcc-env" not in emodes:
        print(f"\n--env: bcc --env tests not available: {runner.unavailable.get('bcc-env')}")
        return out
    saved = os.environ.get("PYTEST_CURRENT_TEST")
    os.environ["PYTEST_CURRENT_TEST"] = "bench/record_bench.py::test_env (call)"
    out["environment_variables"] = len(os.environ)
    print(f"\n--env: {len(os.environ)} variables in each process's environment", file=sys.stderr)
    try:
        cases: list[tuple[str, str, list[str], Path | None, int | None, int]] = [
            (f"storm_{par}x{n}", f"{par} loop(s) x {n} /bin/true",
             ["/bin/sh", str(WORKLOADS / "storm.sh"), str(n), str(par)], None, n * par, runs)
            for par in (1, 2)]
        if package is not None:
            cases.append(("configure", f"./configure of {package}", ["./configure"],
                          configure_tree(package), None, configure_runs))
        for label, title, workload, cwd, expect, k in cases:
            print(f"  env {label}: {title}", file=sys.stderr)
            rs = rotate(runner, emodes, workload, k, cwd)
            s = summarize(rs, runner.fixed_cpu)
            vs = summarize({"bcc": rs["bcc"], "bcc-env": rs["bcc-env"]}, runner.fixed_cpu,
                           base="bcc")["bcc-env"]
            out[label] = {"title": title, "summary": s, "env_vs_noenv": vs,
                          "runs": {m: [asdict(r) for r in v] for m, v in rs.items()}}
            print_overhead(f"--env tests, {title}", s, {}, expect_true=expect)
            print(f"  {'bcc --env tests / bcc':<21} ratio {fmt(vs.get('ratio'), '.4f')}, paired "
                  f"median {fmt(vs.get('paired_ratio_median'), '.4f')} (min "
                  f"{fmt(vs.get('paired_ratio_min'), '.3f')}, max "
                  f"{fmt(vs.get('paired_ratio_max'), '.3f')}); bytes per exec "
                  f"{fmt(s['bcc'].get('rec_bytes_per_exec'), '.0f')} -> "
                  f"{fmt(s['bcc-env'].get('rec_bytes_per_exec'), '.0f')}")
    finally:
        if saved is None:
            os.environ.pop("PYTEST_CURRENT_TEST", None)
        else:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    return out


def section_startup(runner: Runner, modes: list[str], runs: int,
                    profile_runs: int) -> dict[str, Any]:
    startup_modes = [m for m in modes if m in ("untraced", *RECORDERS)]
    rs: dict[str, list[Run]] = {m: [] for m in startup_modes}
    for _ in range(runs):
        for m in startup_modes:
            rs[m].append(runner.run(m, [TRUE]))
    out: dict[str, Any] = {"modes": {}}
    print(f"\nStart-up: launch of `record` to the first instruction of CMD ({runs} runs)")
    print(f"  {'mode':<9} {'median':>7} {'min':>7} {'p25':>7} {'p75':>7} {'max':>7} "
          f"{'shutdown':>8} {'header':>7}")
    for m, v in rs.items():
        xs = sorted(r.startup_s for r in v if r.ok and r.startup_s is not None)
        if not xs:
            print(f"  {m:<9} failed: {[r.error for r in v][:1]}")
            continue
        q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
        hs = [r.header_startup_s for r in v if r.header_startup_s is not None]
        sd = [r.shutdown_s for r in v if r.ok and r.shutdown_s is not None]
        shutdown, header = med(sd), med(hs)
        row = {"median_s": med(xs), "min_s": xs[0], "max_s": xs[-1], "p25_s": q[0],
               "p75_s": q[2], "shutdown_median_s": shutdown,
               "header_startup_median_s": header, "all_s": xs}
        out["modes"][m] = row
        print(f"  {m:<9} {row['median_s']:>7.3f} {xs[0]:>7.3f} {q[0]:>7.3f} {q[2]:>7.3f} "
              f"{xs[-1]:>7.3f} {fmt(shutdown, '.3f'):>8} {fmt(header, '.3f'):>7}")
    for mode, why in runner.unavailable.items():
        if mode in RECORDERS:
            print(f"  {mode:<9} not available: {why}")
    if "bcc" in startup_modes and profile_runs > 0:
        profiles = []
        for _ in range(profile_runs):
            launch = time.monotonic_ns()
            p = subprocess.run([PY, str(WORKLOADS / "startup_profile.py"), str(launch)],
                               capture_output=True, text=True, cwd=ROOT)
            if p.returncode == 0:
                profiles.append(json.loads(p.stdout))
            else:
                print(f"  startup_profile.py failed: {p.stderr.strip()[-300:]}")
        if profiles:
            keys = list(profiles[0])
            prof: dict[str, float] = {k: statistics.median(pr[k] for pr in profiles)
                                      for k in keys}
            out["bcc_profile"] = {"median": prof, "runs": profiles}
            total = prof.get("total_to_live") or 1.0
            print(f"\n  BCC start-up breakdown (median of {len(profiles)} fresh processes; "
                  "'trivial_compile' and 'close' are outside the total)")
            for k in keys:
                share = "" if k in ("total_to_live", "trivial_compile", "close") else (
                    f" {100 * prof[k] / total:5.1f}%")
                print(f"    {k:<16} {prof[k]:7.3f}s{share}")
    if "bcc" in startup_modes and profile_runs > 0:
        var: dict[str, list[float]] = {"trivial": [], "user_read": []}
        for _ in range(profile_runs):
            for name, xs in var.items():
                p = subprocess.run([PY, str(WORKLOADS / "startup_profile.py"), "--variant",
                                    name], capture_output=True, text=True, cwd=ROOT)
                if p.returncode == 0:
                    xs.append(json.loads(p.stdout)[name])
        if var["trivial"] and var["user_read"]:
            out["bcc_variants"] = {k: med(v) for k, v in var.items()}
            print("  one-line program compiled in a fresh process: "
                  f"{med(var['trivial']):.3f}s; with one bpf_probe_read_user (kallsyms scan): "
                  f"{med(var['user_read']):.3f}s")
    if "bcc" in startup_modes and profile_runs > 0:
        p = subprocess.run([PY, str(WORKLOADS / "tracepoint_costs.py"), "--runs",
                            str(2 * profile_runs - 1)], capture_output=True, text=True, cwd=ROOT)
        if p.returncode == 0:
            tc = json.loads(p.stdout)
            out["tracepoint_costs"] = tc
            print(f"  syscall tax: dd (2 M syscalls) CPU {tc['dd_bare_s']:.3f}s bare, "
                  f"{tc['dd_one_empty_syscall_tp_s']:.3f}s with empty programs on one syscall's tracepoints "
                  f"attached: x{tc['ratio']:.3f}, {tc['tax_ns_per_syscall']:.0f} ns per syscall;\n"
                  f"    {tc['dd_recorder_program_s']:.3f}s with the recorder's program attached "
                  f"(no reader, nothing emitted): x{tc['program_ratio']:.3f}, "
                  f"{tc['program_tax_ns_per_syscall']:.0f} ns per syscall")
            print(f"  detaching the {tc['tracepoints']} syscall tracepoints: "
                  f"{tc['detach_serial_s']:.3f}s one after the other (BPF.cleanup), "
                  f"{tc['detach_parallel_s']:.3f}s from one thread each")
        else:
            print(f"  tracepoint_costs.py failed: {p.stderr.strip()[-300:]}")
    if "bpftrace" in startup_modes and shutil.which("bpftrace"):
        floor = []
        for _ in range(max(1, profile_runs)):
            t = time.monotonic()
            subprocess.run(["bpftrace", "-e", "BEGIN { exit(); }"], capture_output=True)
            floor.append(time.monotonic() - t)
        out["bpftrace_floor_s"] = med(floor)
        print(f"\n  bpftrace -e 'BEGIN {{ exit(); }}' alone: {med(floor):.3f}s (median)")
    return out


# ---------------------------------------------------------------------------


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def run_sections(runner: Runner, args: argparse.Namespace, sections: list[str], runs: int,
                 storm_n: int, results: dict[str, Any]) -> None:
    modes = runner.probe(list(MODES))
    results["meta"]["modes"] = modes
    results["meta"]["unavailable"] = dict(runner.unavailable)
    results["meta"]["tracer_fixed_cpu_s"] = dict(runner.fixed_cpu)
    for m, why in runner.unavailable.items():
        print(f"record_bench: {m} not available: {why}", file=sys.stderr)
    recorders = [m for m in modes if m in RECORDERS]
    if "storm" in sections:
        results["storm"] = section_storm(runner, modes, runs, storm_n)
    if "configure" in sections:
        results["configure"] = section_configure(
            runner, modes, args.configure_runs or min(runs, 3), args.package)
    if "completeness" in sections:
        results["completeness"] = section_completeness(runner, recorders, args.quick)
    if "fds" in sections:
        held = [int(x) for x in args.fds_held.split(",") if x.strip()]
        results["fds"] = section_fds(
            runner, modes, args.fds_runs or runs, storm_n,
            args.configure_runs or min(runs, 3), None if args.fds_no_configure else args.package,
            held)
    if "env" in sections:
        results["env"] = section_env(runner, modes, args.fds_runs or runs, storm_n,
                                     args.configure_runs or min(runs, 3),
                                     None if args.fds_no_configure else args.package)
    if "startup" in sections:
        results["startup"] = section_startup(
            runner, modes, max(3, 2 * runs), 1 if args.quick else 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None,
                    help="rotations per overhead workload (default 5; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only this section (repeatable)")
    ap.add_argument("--json", type=Path, help="write every result to this JSON file")
    ap.add_argument("--storm-n", type=int, default=None,
                    help="/bin/true per storm loop (default 2000; --quick: 200)")
    ap.add_argument("--package", default="hello",
                    help="Debian source package whose ./configure is timed (default hello)")
    ap.add_argument("--configure-runs", type=int, default=None,
                    help="rotations for configure (default: --runs, at most 3)")
    ap.add_argument("--fds-runs", type=int, default=None,
                    help="rotations per workload of the fds section (default: --runs)")
    ap.add_argument("--fds-held", default="100,250",
                    help="descriptors held by the storm in the fds section (default 100,250)")
    ap.add_argument("--fds-no-configure", action="store_true",
                    help="fds section: leave ./configure out")
    ap.add_argument("--run-timeout", type=float, default=1800.0,
                    help="stop any run (SIGTERM, then SIGKILL) after this many seconds")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("record_bench: needs root (it runs `record`): sudo .venv/bin/python "
              "bench/record_bench.py", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 5)
    storm_n = args.storm_n or (200 if args.quick else 2000)
    sections = args.only or list(SECTIONS)
    tools = build_helpers()
    results: dict[str, Any] = {
        "meta": {
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(), "cpus": os.cpu_count(), "python": PY,
            "argv": sys.argv[1:], "runs": runs, "quick": args.quick,
            "loadavg_start": loadavg(),
            "bpf_program_sha256": hashlib.sha256(
                (ROOT / "bpf_programs" / "proctrace.bpf.c").read_bytes()).hexdigest()[:16],
            "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        }
    }
    t_start = time.monotonic()

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    with tempfile.TemporaryDirectory(prefix="record_bench.") as tmp:
        runner = Runner(tools, Path(tmp), args.run_timeout)
        try:
            run_sections(runner, args, sections, runs, storm_n, results)
        finally:
            proc = runner.current
            if proc is not None and proc.poll() is None:
                proc.terminate()  # record writes its End and exits
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["duration_s"] = round(time.monotonic() - t_start, 1)
    print(f"\n(total {results['meta']['duration_s']}s; load average at start "
          f"{results['meta']['loadavg_start']}, at end {results['meta']['loadavg_end']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
