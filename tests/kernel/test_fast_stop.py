"""The bpftrace backend's fast stop (issue 16): close() tells bpftrace to stop and
returns; bpftrace then exits (its exit detaches its probes) and is reaped, leaving
no process and no zombie behind."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.support import scaled

pytestmark = pytest.mark.kernel


def test_bpftrace_exits_and_is_reaped_after_close() -> None:
    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bpftrace import BpftraceBackend

    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace not installed")
    b = BpftraceBackend(BackendConfig(tracer_pid=os.getpid()))
    b.start()
    proc = b._proc
    assert proc is not None and proc.poll() is None
    b.close()
    assert b._proc is None
    deadline = time.monotonic() + scaled(30)  # a bound, not a measurement
    while ((proc.returncode is None or Path(f"/proc/{proc.pid}").exists())
           and time.monotonic() < deadline):
        time.sleep(0.05)
    assert proc.returncode is not None  # reaped by close()'s thread
    assert not Path(f"/proc/{proc.pid}").exists()  # no process, no zombie
