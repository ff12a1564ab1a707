"""How the HTML report (and the chrome-trace export) scale: 1k, 10k and 50k processes.

For each size this writes a synthetic CI-like recording (a `make -j8 check` driving
compilers and test scripts, up to 12 levels deep; 7% exit non-zero, 2% killed, 0.1%
never exit), then measures:

- Python: reading + building the tree, rendering the HTML, rendering the chrome trace,
  and the sizes of both files;
- headless Chromium (Debian's, driven by Playwright): time from navigation start to the
  report being interactive (`readyAt`: reading and parsing the file, parsing the JSON,
  building the rows, first draw), the script's own share (`loadMs`), and the time of
  interactions, each including a synchronous redraw: typing a filter, clearing it,
  collapsing everything, expanding everything, zooming, scrolling to the bottom, and a
  hover (mouse move to tooltip shown).

Browser figures are the median of `--repeat` page loads.  The last lines print ratios
against the smallest size, measured in the same run.

`--sizes-only` measures no browser: it prints the HTML size of each synthetic tree,
and the size of the descriptors section (with and without it) for the bats recording
of tests/fixtures and for a synthetic `record --fds` recording of a bash loop of
pipelines and command substitutions (:func:`pipeline_events`).

    .venv/bin/python bench/html_bench.py [--sizes 1000,10000,50000] [--repeat 3]
    .venv/bin/python bench/html_bench.py --sizes-only
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from proctrace_bcc.events import End, Event, Exec, Exit, FdInfo, FdSnapshot, Fork, Header
from proctrace_bcc.read import read_recording
from proctrace_bcc.render import chrome_trace, html
from proctrace_bcc.tree import build_tree
from proctrace_bcc.writer import RecordingWriter

MS = 1_000_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def synthetic_events(n: int, *, seed: int = 1) -> list[Event]:
    """A CI-like tree of `n` processes, deterministic for a seed."""
    rnd = random.Random(seed)
    evs: list[Event] = []
    t = MS
    root = 1000
    evs.append(Exec.from_argv(t, root, 1, root, ["make", "-j8", "check"]))
    pid = root
    live: list[tuple[int, int]] = [(root, 0)]  # (pid, depth) of processes that may fork
    tools = [["gcc", "-O2", "-c"], ["ld", "-o"], ["bash", "-c", "run-test"], ["python3", "-m"],
             ["sed", "-e", "s/a/b/"], ["git", "rev-parse"], ["cat"], ["grep", "-q", "x"]]
    exits: list[tuple[int, int, int, int | None, int | None]] = []
    exit_at: dict[int, int] = {root: 1 << 62}
    for _ in range(n - 1):
        pid += 1
        t += rnd.randrange(20_000, 400_000)
        parent, depth = live[rnd.randrange(len(live))] if rnd.random() < 0.7 else live[0]
        if exit_at[parent] <= t + 100_000:
            parent, depth = live[0]
        evs.append(Fork(timestamp=t, parent_pid=parent, child_pid=pid, parent_pgid=root,
                        child_pgid=root))
        argv = [*rnd.choice(tools), f"src/module{pid % 997}/file{pid}.c"]
        evs.append(Exec.from_argv(t + 50_000, pid, parent, root, argv,
                                  filename="/usr/bin/" + argv[0]))
        end_t = t + 50_000 + int(rnd.expovariate(1 / 30_000_000)) + 100_000
        r = rnd.random()
        if r < 0.999:
            code, sig = (0, None) if r < 0.93 else (1, None) if r < 0.98 else (None, 9)
            exits.append((end_t, pid, parent, code, sig))
            exit_at[pid] = end_t
        else:
            exit_at[pid] = 1 << 62  # never exits
        if depth < 12:
            live.append((pid, depth + 1))
        if len(live) > 64:
            live.pop(1)
    for ts, p, pp, code, sig in exits:
        evs.append(Exit(timestamp=ts, pid=p, ppid=pp, pgid=root, exit_code=code, signal=sig))
    end = max(e.timestamp for e in evs) + MS
    evs.append(Exit(timestamp=end - 1, pid=root, ppid=1, pgid=root, exit_code=0))
    evs.append(End(timestamp=end, reason="exited"))
    evs.sort(key=lambda e: e.timestamp)
    return evs


def pipeline_events(loops: int) -> list[Event]:
    """`bash -c 'for ...; do echo x | cat; y=$(tr z q); done; sleep 100 &'` with --fds.

    Each loop forks `echo` (writes a new pipe) and `cat` (reads it), then `tr` (writes
    a $(...) pipe): 3 processes and 2 pipes per loop; the last `sleep` keeps the last
    pipe's write end at fd 3, a leak.
    """
    root, t = 1000, MS
    dev = (15 << 8) | 0  # pipefs
    std = [FdInfo(0, "char", 0x103, 4, None, True, 0), FdInfo(1, "tty", 0x8800, 3, None, True, 1),
           FdInfo(2, "tty", 0x8800, 3, None, True, 1)]

    def pipe(fd: int, ino: int, write: bool, inherited: bool | None = False) -> FdInfo:
        return FdInfo(fd, "pipe", dev, ino, None, inherited, 1 if write else 0)

    evs: list[Event] = [Fork(timestamp=0, parent_pid=1, child_pid=root, parent_pgid=1,
                             child_pgid=root),
                        Exec.from_argv(t, root, 1, root, ["bash", "-c", "loop"], fds=std)]
    pid, ino = root, 50_000
    for _ in range(loops):
        ino += 2
        for argv, fds in ((["echo", "x"], [std[0], pipe(1, ino, True), std[2]]),
                          (["cat"], [pipe(0, ino, False), std[1], std[2]]),
                          (["tr", "z", "q"], [std[0], pipe(1, ino + 1, True), std[2]])):
            pid += 1
            t += 200_000
            evs.append(Fork(timestamp=t, parent_pid=root, child_pid=pid, parent_pgid=root,
                            child_pgid=root))
            evs.append(Exec.from_argv(t + 50_000, pid, root, root, argv, fds=fds))
            evs.append(Exit(timestamp=t + 150_000, pid=pid, ppid=root, pgid=root, exit_code=0))
    pid += 1
    t += 200_000
    leak = [*std, pipe(3, ino, True, True)]
    evs.append(Fork(timestamp=t, parent_pid=root, child_pid=pid, parent_pgid=root,
                    child_pgid=root))
    evs.append(Exec.from_argv(t + 50_000, pid, root, root, ["sleep", "100"], fds=leak))
    t += MS
    evs.append(FdSnapshot(timestamp=t, pid=root, fds=std))
    evs.append(FdSnapshot(timestamp=t, pid=pid, fds=leak))
    evs.append(End(timestamp=t + 1, reason="timeout", running=[root, pid]))
    return evs


def write_recording(path: Path, n: int) -> None:
    w = RecordingWriter(path)
    w.write_header(Header(version="bench", backend="synthetic", hostname="bench",
                          command=["make", "-j8", "check"], root_pid=1000,
                          start_time="2024-01-01T00:00:00Z"))
    w.write_many(synthetic_events(n))
    w.close()


def html_bytes(rec_path: Path, fds: bool = True) -> tuple[int, int]:
    """(processes, bytes of the HTML report); not fds: of the recording without its
    descriptor data (no descriptors section)."""
    rec = read_recording(rec_path)
    if not fds:
        rec.events = [ev for ev in rec.events if not isinstance(ev, FdSnapshot)]
        for ev in rec.events:
            if isinstance(ev, Exec):
                ev.fds = None
    tree = build_tree(rec.events, rec.header)
    return len(tree.processes), sum(len(c.encode()) for c in html.render(rec, tree))


def sizes_only(sizes: list[int], outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        path = outdir / f"bench-{n}.ndjson"
        write_recording(path, n)
        print(f"{n} processes (no descriptor data): html {html_bytes(path)[1]} bytes")
    pipes = outdir / "pipelines-fds.ndjson"
    w = RecordingWriter(pipes)
    w.write_header(Header(version="bench", backend="synthetic", hostname="bench",
                          command=["bash", "-c", "loop"], root_pid=1000,
                          start_time="2024-01-01T00:00:00Z", options={"fds": True}))
    w.write_many(pipeline_events(200))
    w.close()
    bats = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bats-leak-fds.ndjson"
    for path in (bats, pipes):
        n, with_fds = html_bytes(path)
        without = html_bytes(path, fds=False)[1]
        print(f"{path.name} ({n} processes): html {with_fds} bytes, {without} without the "
              f"descriptors section ({with_fds - without} for it)")


INTERACTIONS = """async () => {
  const pt = window.__proctrace;
  const time = (f) => { const t = performance.now(); f(); pt.draw(); return performance.now() - t; };
  const out = {};
  out.filter = time(() => pt.setFilter("grep"));
  out.unfilter = time(() => pt.setFilter(""));
  out.collapse_all = time(() => document.getElementById("collapse-all").click());
  out.expand_all = time(() => document.getElementById("expand-all").click());
  const [a, b] = pt.view();
  out.zoom = time(() => pt.setView(a + (b - a) * 0.4, a + (b - a) * 0.45));
  out.fit = time(() => document.getElementById("zoom-fit").click());
  const wrap = document.getElementById("tl-wrap");
  out.scroll_end = time(() => { wrap.scrollTop = wrap.scrollHeight; });
  return out;
}"""


def measure_page(browser: Any, path: Path, n: int, repeat: int) -> dict[str, float]:
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        t = time.perf_counter()
        page.goto(path.as_uri(), timeout=120_000)
        while not page.evaluate("window.__proctrace && window.__proctrace.ready"):
            time.sleep(0.01)
        wall = (time.perf_counter() - t) * 1000
        if errors:
            raise SystemExit(f"page errors: {errors}")
        rows = page.evaluate("window.__proctrace.rows()")
        assert rows == n, (rows, n)
        r: dict[str, float] = {"wall_ms": wall,
                               "ready_ms": page.evaluate("window.__proctrace.readyAt"),
                               "script_ms": page.evaluate("window.__proctrace.loadMs")}
        r.update(page.evaluate(INTERACTIONS))
        pt = page.evaluate("window.__proctrace.barPoint(window.__proctrace.rows() - 1)")
        t = time.perf_counter()
        page.mouse.move(pt["x"], pt["y"])
        assert page.evaluate("window.__proctrace.tooltip()") is not None
        r["hover"] = (time.perf_counter() - t) * 1000
        runs.append(r)
        page.close()
    return {k: statistics.median(run[k] for run in runs) for k in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--keep", type=Path, help="keep the generated files in this directory")
    ap.add_argument("--sizes-only", action="store_true",
                    help="print file sizes only (no browser), descriptor sections included")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.sizes_only:
        with tempfile.TemporaryDirectory(prefix="html_bench.") as tmpdir:
            sizes_only(sizes, args.keep or Path(tmpdir))
        return 0
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs the playwright package (pip install playwright)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="html_bench."))
    outdir = args.keep or tmp
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, float]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            for n in sizes:
                rec_path = outdir / f"bench-{n}.ndjson"
                write_recording(rec_path, n)
                t = time.perf_counter()
                rec = read_recording(rec_path)
                tree = build_tree(rec.events, rec.header)
                r: dict[str, float] = {"read_tree_s": time.perf_counter() - t}
                t = time.perf_counter()
                doc = "".join(html.render(rec, tree))
                r["html_render_s"] = time.perf_counter() - t
                html_path = outdir / f"bench-{n}.html"
                html_path.write_text(doc, encoding="utf-8")
                r["html_mb"] = len(doc.encode()) / 1e6
                t = time.perf_counter()
                trace = "".join(chrome_trace.render(rec, tree))
                r["trace_render_s"] = time.perf_counter() - t
                r["trace_mb"] = len(trace.encode()) / 1e6
                (outdir / f"bench-{n}.trace.json").write_text(trace, encoding="utf-8")
                r.update(measure_page(browser, html_path, len(tree.processes), args.repeat))
                results[n] = r
                print(f"{n} processes: " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()),
                      flush=True)
            browser.close()
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    cols = ["read_tree_s", "html_render_s", "html_mb", "trace_render_s", "trace_mb", "ready_ms",
            "script_ms", "filter", "unfilter", "collapse_all", "expand_all", "zoom", "fit",
            "scroll_end", "hover"]
    print()
    print("| processes | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for n, r in results.items():
        print(f"| {n} | " + " | ".join(f"{r[c]:.3g}" for c in cols) + " |")
    base = sizes[0]
    print()
    print("(interaction columns are milliseconds, each including a synchronous redraw)")
    for n in sizes[1:]:
        print(f"{n}/{base} processes ({n / base:.0f}x): "
              f"ready {results[n]['ready_ms'] / results[base]['ready_ms']:.1f}x, "
              f"script {results[n]['script_ms'] / results[base]['script_ms']:.1f}x, "
              f"html size {results[n]['html_mb'] / results[base]['html_mb']:.1f}x, "
              f"filter {results[n]['filter'] / max(results[base]['filter'], 0.1):.1f}x, "
              f"scroll {results[n]['scroll_end'] / max(results[base]['scroll_end'], 0.1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
