"""The skip-or-fail rule of the `kernel` and `browser` markers (tests/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import support


@pytest.mark.parametrize("kind", ["kernel", "browser"])
def test_missing_requirement_skips(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.delenv(support.REQUIRE_ENV[kind], raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        support.unavailable(kind, "no widget")


@pytest.mark.parametrize("kind", ["kernel", "browser"])
def test_missing_requirement_fails_when_required(monkeypatch: pytest.MonkeyPatch,
                                                 kind: str) -> None:
    env = support.REQUIRE_ENV[kind]
    monkeypatch.setenv(env, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{env}=1 but no widget"):
        support.unavailable(kind, "no widget")


def test_checks_name_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(support, "JS_DIR", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert support.node_modules_missing() == (
        "tests/js/node_modules/mermaid missing (run tests/js/install.sh)")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert support.node_modules_missing() == "no node (apt-get install nodejs npm)"
    monkeypatch.setenv("PROCTRACE_CHROMIUM", str(tmp_path / "nope"))
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert support.browser_missing() == "no Chromium (apt-get install chromium)"
