"""Markers `kernel` and `browser`: skip with the reason when the machine lacks what the
test needs, fail instead when PROCTRACE_REQUIRE_KERNEL=1 / PROCTRACE_REQUIRE_BROWSER=1.
See tests/support.py for what each needs."""

from __future__ import annotations

import pytest

from tests.support import browser_missing, kernel_missing, unavailable

_CHECKS = {"kernel": kernel_missing, "browser": browser_missing}
_cache: dict[str, str | None] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for kind, check in _CHECKS.items():
        if item.get_closest_marker(kind) is None:
            continue
        if kind not in _cache:
            _cache[kind] = check()
        reason = _cache[kind]
        if reason is not None:
            unavailable(kind, reason)
