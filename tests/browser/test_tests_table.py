"""The HTML report's tests table (issue 15): a row per test linking to its first
process's row, and "only this test" keeping that test's processes in the timeline.
PROCTRACE_SCREENSHOT=PATH also saves a screenshot of the table."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import chromium_path, unavailable

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "tests-bats.ndjson"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("browser", "the playwright Python package is not installed")
    exe = chromium_path()
    if exe is None:
        unavailable("browser", "no chromium binary (apt-get install chromium)")
    out = tmp_path_factory.mktemp("tests-table") / "report.html"
    subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(FIXTURE),
                    "-d", "html", "-o", str(out)], check=True, cwd=ROOT)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=ARGS)
        pg = b.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(out.as_uri())
        pg.wait_for_selector("html[data-ready='1']")
        assert not errors
        yield pg
        b.close()


def test_one_row_per_test_in_run_order(page: Any) -> None:
    rows = page.locator("#tests tbody tr")
    assert rows.count() == 3
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
    assert [c[1] for c in cells] == ["starts a helper and forgets it", "fails on purpose",
                                     "passes, with a comma"]
    assert [c[2] for c in cells] == ["leak.bats, test 1", "leak.bats, test 2", "leak.bats, test 3"]
    assert [c[7] for c in cells] == ["1", "0", "0"]  # left running
    assert [c[8] for c in cells] == ["ok", "failed", "ok"]
    shot = os.environ.get("PROCTRACE_SCREENSHOT")
    if shot:
        page.locator("#tests-sec").screenshot(path=shot)


def test_name_links_to_the_tests_first_row(page: Any) -> None:
    page.locator("#tests tbody tr").nth(1).locator("a").click()
    r = page.evaluate("window.__proctrace.selected()")
    assert page.evaluate("window.__proctrace.visibleRows()")  # the timeline is drawn
    pid = page.evaluate(f"(function () {{ var v = window.__proctrace.visibleRows(); "
                        f"for (var i = 0; i < v.length; i++) if (v[i].index === {r}) "
                        f"return v[i].pid; }})()")
    assert pid == 7241  # test 2's bats-exec-test


def test_only_this_test_keeps_its_processes(page: Any) -> None:
    page.locator("#tests tbody tr").nth(0).locator("button").click()
    rows = page.evaluate("window.__proctrace.visibleRows()")
    own = [r["pid"] for r in rows if not r["context"]]
    assert 7225 in own and 7239 in own  # its bats-exec-test and the forgotten sleep
    assert 7241 not in [r["pid"] for r in rows]  # test 2's
    assert page.locator("#filter-count").inner_text() == "test 1: 8 processes"
