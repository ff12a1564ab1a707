"""`make bpf-check` for the bpftrace script: compile it with the installed bpftrace, then
load, verify and attach every variant this machine can run and see the handshake answer.

Marked `kernel` (root, BPF, bpftrace): skipped elsewhere, failing under
PROCTRACE_REQUIRE_KERNEL=1.
"""

from __future__ import annotations

import os
import shutil

import pytest

from proctrace_bcc.backends.bpftrace import backend, check, probe
from tests.support import unavailable

pytestmark = pytest.mark.kernel

# Another bpftrace than the one on PATH (`make bpftrace-compat`: a newer release).
BPFTRACE = os.environ.get("PROCTRACE_TEST_BPFTRACE") or None


@pytest.fixture(autouse=True)
def _needs_bpftrace() -> None:
    if BPFTRACE is None and shutil.which("bpftrace") is None:
        unavailable("kernel", "bpftrace is not installed (apt-get install bpftrace)")


def variant_id(b: backend.BpftraceBackend) -> str:
    return (f"{'prepare' if b.force_prepare_exec else 'noprepare'}-"
            f"{'initns' if b.init_pidns else 'anyns'}")


def test_every_variant_compiles() -> None:
    """`bpftrace --dry-run` (0.22+) or `--emit-elf` (before): semantic checks, codegen, the
    512-byte stack limit."""
    seen = []
    for b in check.variants(BPFTRACE):
        b.binary = probe.find_bpftrace(BPFTRACE)
        b.version = probe.bpftrace_version(b.binary)
        b.prepare_exec = bool(b.force_prepare_exec)
        check.compile_only(b)
        seen.append(variant_id(b))
    assert "noprepare-anyns" in seen


def test_every_variant_loads_and_answers_the_handshake() -> None:
    """The kernel's verifier accepts every program and the last probe answers."""
    lines = check.check(BPFTRACE)
    assert lines and all(line.startswith("ok: ") for line in lines)
    variants = check.variants(BPFTRACE)
    assert len(lines) == len(variants)
    if BPFTRACE is not None:
        assert all(line.startswith(f"ok: {BPFTRACE} ") for line in lines), lines
