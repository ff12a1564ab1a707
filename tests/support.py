"""What the marked tests need, and the skip-or-fail rule (used by tests/conftest.py).

A test marked ``kernel`` needs root, /sys/kernel/btf/vmlinux, and BCC (the ``bcc``
module) or bpftrace; one marked ``browser`` needs Debian's Chromium.  When what they
need is missing they are skipped with the reason, except that they fail when
PROCTRACE_REQUIRE_KERNEL=1 / PROCTRACE_REQUIRE_BROWSER=1 (CI on a machine that must
have it).  Tests with further needs call :func:`unavailable` themselves.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JS_DIR = REPO / "tests" / "js"
REQUIRE_ENV = {"kernel": "PROCTRACE_REQUIRE_KERNEL", "browser": "PROCTRACE_REQUIRE_BROWSER"}


def read_to_eof(fd: int) -> bytes:
    """Everything a pty's master side gives until its last slave closes (EIO then)."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def scaled(seconds: float) -> float:
    """A wall-clock limit of a test, times PROCTRACE_TEST_TIMEOUT_SCALE (VM guests
    under software emulation run 10-40x slower than this machine)."""
    return seconds * float(os.environ.get("PROCTRACE_TEST_TIMEOUT_SCALE") or 1)


def unavailable(kind: str, reason: str) -> None:
    """Skip the running test, or fail it when PROCTRACE_REQUIRE_<KIND>=1."""
    env = REQUIRE_ENV[kind]
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    for cand in (os.environ.get("PROCTRACE_CHROMIUM"), shutil.which("chromium"),
                 "/usr/bin/chromium"):
        if cand and Path(cand).exists():
            return cand
    return None


def kernel_missing() -> str | None:
    """Why kernel tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "no /sys/kernel/btf/vmlinux (kernel without BTF)"
    if importlib.util.find_spec("bcc") is None and shutil.which("bpftrace") is None:
        return "neither BCC (python3-bpfcc) nor bpftrace is installed"
    return None


def browser_missing() -> str | None:
    """Why browser tests cannot run here (None: they can)."""
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium)"
    return None


def node_modules_missing() -> str | None:
    """Why tests driving tests/js (mermaid, playwright-core) cannot run here."""
    if shutil.which("node") is None:
        return "no node (apt-get install nodejs npm)"
    for pkg in ("mermaid", "playwright-core"):
        if not (JS_DIR / "node_modules" / pkg / "package.json").exists():
            return f"tests/js/node_modules/{pkg} missing (run tests/js/install.sh)"
    return None
