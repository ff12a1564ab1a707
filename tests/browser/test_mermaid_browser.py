"""`-d mermaid` output through the real Mermaid parser and renderer.

tests/js/mermaid_check.mjs loads the npm `mermaid` package into Debian's headless
Chromium (playwright-core) and returns, per file, whether mermaid.parse and
mermaid.render succeeded and the task labels as drawn in the SVG.  Every label must
be the full command of its bar (what `bars()` says), whatever characters the argv
holds.  Needs node, tests/js/node_modules (tests/js/install.sh) and chromium: skipped
without them, failing instead when PROCTRACE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from proctrace_bcc.analysis import Analysis
from proctrace_bcc.analyze import analyze
from proctrace_bcc.read import Source
from proctrace_bcc.render import oneline
from proctrace_bcc.render.mermaid import _outcome, bars
from tests.support import JS_DIR, chromium_path, node_modules_missing, unavailable

pytestmark = pytest.mark.browser

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
INPUTS = [*sorted((GOLDEN / "inputs").glob("*.ndjson")),
          GOLDEN.parents[1] / "proctrace_bcc" / "data" / "sample.ndjson"]


@pytest.fixture(scope="module")
def check() -> object:
    reason = node_modules_missing()
    if reason is not None:
        unavailable("browser", reason)

    def run(files: list[Path]) -> dict[str, dict[str, object]]:
        exe = chromium_path() or "/usr/bin/chromium"
        p = subprocess.run(["node", str(JS_DIR / "mermaid_check.mjs"), *map(str, files)],
                           capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "CHROMIUM": exe, "HOME": "/tmp"})
        assert p.returncode == 0, p.stderr
        return {r["file"]: r for r in json.loads(p.stdout)["results"]}

    return run


def expected_labels(path: Path, root: int | None = None) -> Counter[str]:
    with Source(path) as src:
        an = Analysis(src, root)
        an.run()
        _, tree = an.finish()
    labels: Counter[str] = Counter()
    for p in tree.walk():
        spans = bars(p, tree.end)
        _, suffix = _outcome(p)
        for i, (_, _, text) in enumerate(spans):
            labels[oneline(text + (suffix if i == len(spans) - 1 else "")).strip()] += 1
    return labels


def test_every_input_parses_and_keeps_full_labels(check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outs = []
    for inp in INPUTS:
        out = tmp_path / (inp.stem + ".mmd")
        analyze(str(inp), out, "mermaid", None)
        outs.append(out)
    results = check(outs)
    for inp, out in zip(INPUTS, outs, strict=True):
        r = results[str(out)]
        assert r["ok"], f"{inp.name}: {r.get('error')}"
        assert r["type"] == "gantt"
        got = Counter(t.strip() for t in r["tasks"])
        assert got == expected_labels(inp), inp.name


def test_hostile_labels_survive(check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "argv.mmd"
    analyze(str(GOLDEN / "inputs" / "ours-argv.ndjson"), out, "mermaid", None)
    r = check([out])[str(out)]
    assert r["ok"], r.get("error")
    tasks = [t.strip() for t in r["tasks"]]
    url = "https://example.com:8443/api/v1/items?id=7&sort=asc#frag"
    assert f"[2001] curl -s {url}" in tasks
    assert ("[2003] printf a: b # not a comment; c:d\\n\\tend "
            "%%{init: {'theme':'forest'}}%%") in tasks
    assert "[2002] /opt/caf\\xe9/bin/tool --name=\\xff\\xfe plain" in tasks
    assert '[2004] echo <script>alert(1)</script> &amp; "quoted" click section' in tasks


def test_the_check_sees_a_cut_label(check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The original wrote labels raw: Mermaid cuts them at ':'. The check must see it."""
    raw = tmp_path / "raw.mmd"
    raw.write_text("gantt\n    dateFormat x\n    [1] curl https://example.com :done, 0, 5ms\n")
    broken = tmp_path / "broken.mmd"
    broken.write_text("gantt\n    dateFormat x\n    [1] a :nosuchtag, zero, 5ms\n    ::\n")
    r = check([raw, broken])
    assert [t.strip() for t in r[str(raw)]["tasks"]] == ["[1] curl https"]
    assert not r[str(broken)]["ok"]
