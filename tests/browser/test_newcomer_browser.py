"""Issue 17 in the HTML report: rows named by short names, PATH misses apart from
failed execs, every mark in the legend, runs of short-lived identical siblings folded
until clicked (a real browser: tests/browser/test_html_browser.py's harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc.events import End, Event, Exec, ExecFailed, Exit, Fork, Header
from proctrace_bcc.render import html as html_report
from tests.browser.test_html_browser import Report, browser  # noqa: F401 - the fixture
from tests.unit.render_samples import load, write

pytestmark = pytest.mark.browser

MS = 1_000_000
FORKS = 12  # ./configure's short-lived forks, folded into one row


def _events() -> list[Event]:
    def fork(t: int, parent: int, child: int) -> Fork:
        return Fork(timestamp=t, parent_pid=parent, child_pid=child, parent_pgid=100,
                    child_pgid=100, sid=50)

    def ex(t: int, pid: int, ppid: int, argv: list[str], filename: str) -> Exec:
        return Exec.from_argv(t, pid, ppid, 100, argv, filename=filename, sid=50)

    evs: list[Event] = [ex(0, 100, 99, ["/bin/sh", "./configure"], "/bin/sh")]
    for i in range(FORKS):
        evs += [fork((1 + i) * MS, 100, 200 + i), Exit((1 + i) * MS + 300_000, 200 + i, 100,
                                                       100, exit_code=0, signal=None)]
    # bats-exec-test through `#!/usr/bin/env bash`: env tries each PATH entry
    evs += [fork(20 * MS, 100, 300),
            ex(20 * MS + 10_000, 300, 100, ["/usr/bin/env", "bash",
               "/usr/libexec/bats-core/bats-exec-test", "--dummy-flag", "/t/leak.bats",
               "test_a_background_python_keeps_fd_3", "1", "1", "1"], "/usr/bin/env"),
            ExecFailed(timestamp=20 * MS + 20_000, pid=300, filename="/usr/local/bin/bash",
                       errno=2),
            ex(20 * MS + 30_000, 300, 100, ["bash", "/usr/libexec/bats-core/bats-exec-test",
               "--dummy-flag", "/t/leak.bats", "test_a_background_python_keeps_fd_3", "1",
               "1", "1"], "/usr/bin/bash"),
            ExecFailed(timestamp=21 * MS, pid=300, filename="/usr/bin/nosuch-tool", errno=2),
            Exit(1500 * MS, 300, 100, 100, exit_code=1, signal=None),  # long: not folded
            Exit(1600 * MS, 100, 99, 100, exit_code=1, signal=None),
            End(timestamp=1601 * MS, reason="exited", running=[], exit_status=1 << 8, lost=0)]
    return evs


@pytest.fixture
def report(browser: Any, tmp_path: Path) -> Iterator[Report]:  # noqa: F811
    header = Header(version="0.1.0", backend="bcc", kernel="6.18.0", hostname="h",
                    command=["./configure"], root_pid=100,
                    start_time="2024-05-01T12:00:00Z")
    rec, tree = load(write(tmp_path / "rec.ndjson", _events(), header))
    out = tmp_path / "report.html"
    out.write_text("".join(html_report.render(rec, tree)), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(out.as_uri())
    rep = Report(page, errors, [])
    rep.wait_for("window.__proctrace && window.__proctrace.ready")
    yield rep
    assert errors == []
    page.close()


def test_short_names_and_path_misses(report: Report) -> None:
    cmds = [r["command"] for r in report.js("window.__proctrace.visibleRows()")]
    assert "bats-exec-test leak.bats 'a background python keeps fd 3'" in cmds
    assert "configure (fork)" in cmds  # the first of the folded run
    d = report.js("JSON.parse(document.getElementById('proctrace-data').textContent)")
    kinds = [d["codes"]["failed_exec"][k]["name"] for k in d["failed_execs"]["kind"]]
    files = [d["strings"][f] for f in d["failed_execs"]["file"]]
    assert list(zip(files, kinds, strict=True)) == [("/usr/local/bin/bash", "miss"),
                                                   ("/usr/bin/nosuch-tool", "failed")]


def test_every_mark_has_a_legend_entry(report: Report) -> None:
    legend = report.js("document.getElementById('legend').textContent")
    for words in ("exit 0", "non-zero exit", "failed exec", "PATH miss", "earlier image",
                  "outside the time window", "collapsed subtree", "folded: click the row"):
        assert words in legend, words


def test_identical_short_siblings_fold_until_clicked(report: Report) -> None:
    rows = report.js("window.__proctrace.visibleRows()")
    assert [r["pid"] for r in rows] == [100, 200, 300]  # 12 forks in one row
    y = report.js("window.__proctrace.rowY(window.__proctrace.find(200)[0])")
    x = report.js("document.getElementById('tl').getBoundingClientRect().left + 80")
    report.page.mouse.click(x, y)  # on the folded row's label
    report.wait_for(f"window.__proctrace.visibleRows().length === {FORKS + 2}")
    report.page.click("#collapse-all")
    report.wait_for("window.__proctrace.visibleRows().length <= 3")
