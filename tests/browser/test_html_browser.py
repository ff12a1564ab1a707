"""The HTML report in a real browser: Debian's headless Chromium driven by Playwright.

The page exposes `window.__proctrace` (rows, visible rows, where a bar or a collapse
triangle is on screen, the tooltip's text) so these tests query state instead of
parsing pixels; the mouse events themselves are real ones sent by the browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc.fds import analyze_fds
from proctrace_bcc.render import html as html_report
from proctrace_bcc.render._common import spans
from tests.support import chromium_path, unavailable
from tests.unit.fds_samples import BATS_LEAK, write_hostile_leak
from tests.unit.render_samples import AMP, HOSTILE, load, write_mixed

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _unavailable(reason: str) -> None:
    unavailable("browser", reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install playwright)")
    exe = chromium_path()
    if exe is None:
        _unavailable("no chromium binary (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Report:
    def __init__(self, page: Any, errors: list[str], requests: list[str]) -> None:
        self.page = page
        self.errors = errors
        self.requests = requests

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def row_of(self, pid: int, nth: int = 0) -> int:
        rows: list[int] = self.js("pid => window.__proctrace.find(pid)", pid)
        return rows[nth]

    def wait_for(self, expr: str, timeout: float = 10.0) -> None:
        """Poll a JS expression until truthy (wait_for_function needs eval, which our CSP bans)."""
        deadline = time.monotonic() + timeout
        while not self.js(expr):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expr}")
            time.sleep(0.02)

    def visible_pids(self) -> list[int]:
        return [r["pid"] for r in self.js("window.__proctrace.visibleRows()")]

    def hover_bar(self, row: int, image: int | None = None) -> str | None:
        pt = self.js("([r, i]) => window.__proctrace.barPoint(r, i === null ? undefined : i)",
                     [row, image])
        self.page.mouse.move(pt["x"], pt["y"])
        tip: str | None = self.js("window.__proctrace.tooltip()")
        return tip


def open_report(browser: Any, tmp_path: Path, *, bypass_csp: bool = False) -> Report:
    rec, tree = load(write_mixed(tmp_path / "rec.ndjson"))
    out = tmp_path / "report.html"
    out.write_text("".join(html_report.render(rec, tree)), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900}, bypass_csp=bypass_csp)
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    rep = Report(page, errors, requests)
    rep.wait_for("window.__proctrace && window.__proctrace.ready")
    return rep


@pytest.fixture
def report(browser: Any, tmp_path: Path) -> Iterator[Report]:
    rep = open_report(browser, tmp_path)
    yield rep
    rep.page.close()


def test_loads_with_no_console_errors_and_no_network(report: Report) -> None:
    assert report.errors == []
    assert [u for u in report.requests if not u.startswith("file://")] == []
    assert report.js("document.querySelector('#summary').textContent").count("ci-runner-7") == 1


def test_one_timeline_row_per_process_in_tree_order(report: Report) -> None:
    assert report.js("window.__proctrace.rows()") == 8
    assert report.visible_pids() == [100, 101, 102, 103, 104, 102, 105, 106]
    depths = [r["depth"] for r in report.js("window.__proctrace.visibleRows()")]
    assert depths == [0, 1, 2, 2, 2, 2, 1, 1]


def test_hovering_a_bar_shows_its_argv_and_process(report: Report) -> None:
    tip = report.hover_bar(report.row_of(103))
    assert tip is not None
    assert "gcc -c 'bad file.c'" in tip and "pid 103" in tip and "ppid 101" in tip
    assert "exit 1" in tip
    # each image of a process that exec'd twice has its own bar and argv
    r104 = report.row_of(104)
    tip = report.hover_bar(r104, 1)
    assert tip is not None and "argv: sh -c 'sleep 100'" in tip and "image 2 of 3" in tip
    tip = report.hover_bar(r104, 2)
    assert tip is not None and "argv: sleep 100" in tip and "SIGKILL" in tip
    assert "1 failed exec" in tip
    report.page.mouse.move(2, 2)
    assert report.js("window.__proctrace.tooltip()") is None


def test_filter_hides_non_matching_rows_and_keeps_ancestors_as_context(report: Report) -> None:
    report.page.fill("#filter", "gcc")
    report.wait_for("window.__proctrace.visibleRows().length === 4")
    rows = report.js("window.__proctrace.visibleRows()")
    assert [(r["pid"], r["context"]) for r in rows] == [
        (100, True), (101, True), (102, False), (103, False)]
    count = report.js("document.querySelector('#filter-count').textContent")
    assert count == "2 matching processes"
    report.page.fill("#filter", "")
    report.wait_for("window.__proctrace.visibleRows().length === 8")


def test_collapsing_a_subtree_hides_its_rows(report: Report) -> None:
    make = report.row_of(101)
    pt = report.js("r => window.__proctrace.togglePoint(r)", make)
    report.page.mouse.click(pt["x"], pt["y"])
    assert report.visible_pids() == [100, 101, 105, 106]
    report.page.mouse.click(pt["x"], pt["y"])
    assert report.visible_pids() == [100, 101, 102, 103, 104, 102, 105, 106]
    report.page.click("#collapse-all")
    assert report.visible_pids() == [100]


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "escaping-alone"])
def test_hostile_argv_is_shown_as_text_and_runs_nothing(browser: Any, tmp_path: Path,
                                                        bypass_csp: bool) -> None:
    report = open_report(browser, tmp_path, bypass_csp=bypass_csp)
    assert report.js("window.__pwned") is None
    assert report.js("document.querySelectorAll('img').length") == 0
    assert report.js("document.querySelectorAll('script').length") == 2
    tip = report.hover_bar(report.row_of(105))
    assert tip is not None and HOSTILE in tip and AMP in tip
    links = report.js("Array.from(document.querySelectorAll('#slowest a'), a => a.textContent)")
    assert f"daemon {HOSTILE} {AMP}" in links
    assert report.js("window.__pwned") is None and report.errors == []
    report.page.close()


def test_table_link_scrolls_to_and_selects_the_row(report: Report) -> None:
    r103 = report.row_of(103)
    report.js("window.__proctrace.setView(0, 1000)")  # zoomed far away from pid 103
    report.page.click("#failed a:text-is('gcc -c bad file.c')")
    assert report.js("window.__proctrace.selected()") == r103
    vs, ve = report.js("window.__proctrace.view()")
    assert vs <= 3_200_000 and ve >= 14_000_000  # pid 103 ran from +3.2 ms to +14 ms
    details = report.js("document.querySelector('#details').textContent")
    assert "pid 103" in details and "gcc -c 'bad file.c'" in details


def test_ctrl_wheel_zooms_and_drag_pans(report: Report) -> None:
    pt = report.js("r => window.__proctrace.barPoint(r)", report.row_of(101))
    before = report.js("window.__proctrace.view()")
    report.page.mouse.move(pt["x"], pt["y"])
    report.page.keyboard.down("Control")
    report.page.mouse.wheel(0, -400)
    report.page.keyboard.up("Control")
    report.wait_for(f"window.__proctrace.view()[1] - window.__proctrace.view()[0]"
                    f" < {(before[1] - before[0]) * 0.9}")
    zoomed = report.js("window.__proctrace.view()")
    report.page.mouse.down()
    report.page.mouse.move(pt["x"] + 200, pt["y"], steps=5)
    report.page.mouse.up()
    panned = report.js("window.__proctrace.view()")
    assert panned[0] < zoomed[0]
    assert panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0])


def test_report_of_a_real_recording(browser: Any, tmp_path: Path) -> None:
    """ci-demo.ndjson: `proctrace-bcc record` (bcc backend) of a small CI script
    (make -j4 of 7 files, 4 tests of which one fails, a compile error, `timeout 0.3 sleep 5`,
    a background `sleep 30` left running); docs/img/report.png shows its report."""
    rec_path = Path(__file__).parent / "data" / "ci-demo.ndjson"
    rec, tree = load(rec_path)
    out = tmp_path / "report.html"
    out.write_text("".join(html_report.render(rec, tree)), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    rep = Report(page, errors, [])
    rep.wait_for("window.__proctrace && window.__proctrace.ready")
    assert errors == []
    assert rep.js("window.__proctrace.rows()") == len(tree.processes) == 84
    rep.page.click("#expand-all")  # runs of short-lived identical siblings are folded
    assert rep.visible_pids() == [p.pid for p in tree.walk()]
    timeout = next(p for p in tree.processes if p.command == "timeout 0.3 sleep 5")
    tip = rep.hover_bar(rep.row_of(timeout.pid))
    assert tip is not None and "argv: timeout 0.3 sleep 5" in tip and "exit 124" in tip
    rep.page.fill("#filter", "/CC1 -quiet")  # case-insensitive, over every image's argv
    n_cc1 = sum(1 for p in tree.processes
                if any("/cc1 -quiet" in sp.label for sp in spans(p, tree.end)))
    assert n_cc1 == 8
    rep.wait_for(f"document.querySelector('#filter-count').textContent === "
                 f"'{n_cc1} matching processes'")
    # recorded without --fds: no descriptors section, and the summary does not mention it
    assert rep.js("document.getElementById('fds-sec')") is None
    assert "Leaked descriptors" not in rep.js("document.querySelector('#summary').textContent")
    assert errors == []
    page.close()


# ---------------------------------------------------------------------------
# The descriptors section (`record --fds`)


def open_recording(browser: Any, tmp_path: Path, rec_path: Path, *,
                   bypass_csp: bool = False) -> Report:
    rec, tree = load(rec_path)
    out = tmp_path / "report.html"
    out.write_text("".join(html_report.render(rec, tree)), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900}, bypass_csp=bypass_csp)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(out.as_uri())
    rep = Report(page, errors, [])
    rep.wait_for("window.__proctrace && window.__proctrace.ready")
    return rep


def test_no_descriptor_section_without_descriptor_data(report: Report) -> None:
    assert report.js("document.getElementById('fds-sec')") is None
    assert "Leaked descriptors" not in report.js("document.querySelector('#summary').textContent")
    assert report.errors == []


def test_descriptor_section_of_a_real_bats_leak(browser: Any, tmp_path: Path) -> None:
    """tests/fixtures/bats-leak-fds.ndjson: bats ran a test doing `sleep 300 &`; the sleep
    kept bats' output pipe at fd 3 (docs/img/report-fds.png shows this section)."""
    _, tree = load(BATS_LEAK)
    (lk,) = analyze_fds(tree).leaks
    sleep, bats, pipe = lk.process, lk.source, lk.channel.name
    test = lk.chain[-1][0]  # bats-exec-test, which forked the sleep
    reader = lk.waiting[0].process
    rep = open_recording(browser, tmp_path, BATS_LEAK)
    page = rep.page
    assert page.is_visible("#fds-sec")
    summary = rep.js("document.querySelector('#summary').textContent")
    assert "Leaked descriptors1" in summary
    # the leak, in words: the sleep, fd 3, the pipe, who opened it, who waits
    heads = rep.js("Array.from(document.querySelectorAll('#fds-leaks .leak-head'), "
                   "e => e.textContent)")
    assert heads == [f"sleep 300 (pid {sleep.pid}) holds fd 3, a pipe (write end, {pipe}) that "
                     f"bats (pid {bats.pid}) opened; it inherited it through "
                     + heads[0].split("; it inherited it through ", 1)[1]]
    leak_text = rep.js("document.querySelector('#fds-leaks .leak').textContent")
    assert f"bats (pid {reader.pid}, fd 0) is still waiting on the read end of {pipe}." in leak_text
    chain = rep.js("document.querySelector('#fds-leaks .chain').textContent")
    assert chain.startswith("chain: bats \u2192 bats-exec-suite (fd 1) \u2192 ")
    assert chain.endswith("bats-exec-test (fds 1, 3, 4) \u2192 sleep (fd 3)")
    # the pipes table: the leaked pipe first, the sleep marked leaked, the reader waiting
    first = rep.js("document.querySelector('#fds-chan tbody .ch-head').textContent")
    assert first.startswith(f"{pipe}pipeopened by bats (pid {bats.pid}): ")
    marked = rep.js("Array.from(document.querySelectorAll('#fds-chan tbody')[0]"
                    ".querySelectorAll('tr.mark-leaked, tr.mark-waiting'), "
                    "tr => Array.from(tr.cells, c => c.textContent))")
    assert [(m[0], m[1], m[2], m[3], m[5], m[6]) for m in marked] == [
        (str(sleep.pid), "sleep 300", "3", "write", "still open", "\u25cf open \u00b7 leaked"),
        (str(reader.pid), f"bats hang.bats (fork of pid {bats.pid}, never exec'd)", "0", "read",
         "still open", "\u25cf open \u00b7 waiting")]
    # clicking a process in the sentence, the chain or the table selects its timeline row
    # and scrolls it into view
    for selector, proc in [(f"#fds-leaks .leak-head a:text-is('sleep 300 (pid {sleep.pid})')",
                            sleep),
                           ("#fds-leaks .chain a:text-is('bats-exec-test')", test),
                           (f"#fds-leaks a:text-is('bats (pid {reader.pid}, fd 0)')", reader)]:
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.click(selector)
        row = rep.row_of(proc.pid)
        assert rep.js("window.__proctrace.selected()") == row, selector
        y = rep.js("r => window.__proctrace.rowY(r)", row)
        assert y is not None and 0 <= y <= rep.js("window.innerHeight"), selector
        details = rep.js("document.querySelector('#details').textContent")
        assert f"pid {proc.pid}" in details
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.click(f"#fds-chan a:text-is('bats hang.bats (fork of pid {bats.pid}, never exec\\'d)')")
    assert rep.js("window.__proctrace.selected()") == rep.row_of(reader.pid)
    assert rep.errors == []
    page.close()


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "escaping-alone"])
def test_hostile_argv_in_the_descriptor_section_is_text(browser: Any, tmp_path: Path,
                                                        bypass_csp: bool) -> None:
    rep = open_recording(browser, tmp_path, write_hostile_leak(tmp_path / "rec.ndjson"),
                         bypass_csp=bypass_csp)
    assert rep.js("window.__pwned") is None
    assert rep.js("document.querySelectorAll('img').length") == 0
    assert rep.js("document.querySelectorAll('script').length") == 2
    head = rep.js("document.querySelector('#fds-leaks .leak-head').textContent")
    assert head.startswith('daemon </script><img src=x onerror="window.__pwned=1">')
    assert "(pid 11) holds fd 3, a pipe (write end, pipe:[5150]) that sh (pid 10) opened" in head
    cells = rep.js("Array.from(document.querySelectorAll('#fds-chan a'), a => a.textContent)")
    assert cells[0].startswith("sh (pid 10)") and cells[-2].startswith("daemon </script><img")
    # text, never markup: the section's HTML holds it escaped
    section = rep.js("document.getElementById('fds-sec').innerHTML")
    assert "daemon &lt;/script&gt;&lt;img src=x" in section and "<img" not in section
    assert rep.js("window.__pwned") is None and rep.errors == []
    rep.page.close()
