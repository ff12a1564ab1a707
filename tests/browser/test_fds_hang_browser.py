"""The HTML report's descriptors section on issue 14's recordings, in Debian's Chromium:
the leak a group SIGTERM ended (reader inferred) and the hang snapshot of a hung bats,
with the same sentences as `analyze -d fds` and each process a link to its row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc.fds import analyze_fds
from proctrace_bcc.hang import analyze_hang, hang_sentences
from proctrace_bcc.render import fds as render_fds
from tests.browser.test_html_browser import browser, open_recording
from tests.unit.render_samples import load

pytestmark = pytest.mark.browser
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
__all__ = ["browser"]  # test_html_browser's module-scoped Chromium, used as a fixture here


def test_hang_snapshot_under_the_leaks(browser: Any, tmp_path: Path) -> None:
    path = FIXTURES / "leak-hang-timeout.ndjson"
    rep = open_recording(browser, tmp_path, path)
    try:
        assert rep.errors == []
        rec, tree = load(path)
        hang = analyze_hang(tree, rec.events)
        assert hang is not None
        want = [render_fds.text(line) for _, line in hang_sentences(hang)]
        got = rep.js("Array.from(document.querySelectorAll('.hang .hang-line'), "
                     "e => e.textContent)")
        assert got == want
        # Processes are links to their rows, like the leak sentences'.
        links = rep.js("document.querySelectorAll('.hang .hang-line a').length")
        assert links >= len(want)
        assert rep.js("document.querySelector('.hang h3').textContent").startswith(
            "Hang snapshot when --timeout fired at +")
    finally:
        rep.page.close()


def test_inferred_reader_after_a_group_sigterm(browser: Any, tmp_path: Path) -> None:
    path = FIXTURES / "leak-group-term.ndjson"
    rep = open_recording(browser, tmp_path, path)
    try:
        assert rep.errors == []
        _rec, tree = load(path)
        (lk,) = analyze_fds(tree).leaks
        want = [line.strip() for line in render_fds.leak_lines(lk, tree.start)]
        got = rep.js("Array.from(document.querySelectorAll('#fds-leaks .leak')[0].children)"
                     ".filter(e => !e.classList.contains('chain')).map(e => e.textContent)")
        assert got == want
        assert rep.js("document.querySelector('.hang')") is None
    finally:
        rep.page.close()
