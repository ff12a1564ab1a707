"""Parallel spawn storms: the recording ends, and every process in it has exited.

Issue 4: with 2 parallel storms bpftrace delivered events after the recorder had
written younger ones; a fork processed after its child's exit left the child
"running" and `record` never stopped.  bench/storm_end.py is the long version
(2 x 2000, several runs, optionally with bpftrace stalled on purpose), and
bench/sync_proof.py measures the bpftrace sync below against a single handshake.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from proctrace_bcc.backends import bpftrace as bt
from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.events import SetPGID
from tests.support import scaled

from .conftest import Recorder

pytestmark = pytest.mark.kernel

N = 300  # /bin/true per loop: ~5-10 s here with either backend

STORMS = f"""
loop() {{
    i=0
    while [ "$i" -lt {N} ]; do
        /bin/true
        i=$((i + 1))
    done
}}
loop &
loop &
wait
"""


def test_two_parallel_storms_end_with_every_process_accounted(record: Recorder) -> None:
    # run_record's timeout (60 s here) fails the test if the recording does not end.
    r = record(["/bin/sh", "-c", STORMS], timeout=60)
    end = r.rec.end
    assert end is not None, "recording has no End event"
    assert (r.rc, end.reason, end.lost) == (0, "exited", 0)
    assert end.running == []
    procs = r.procs()
    trues = [p for p in procs if p.execs and p.execs[-1].filename == "/bin/true"]
    assert len(trues) == 2 * N
    assert len(procs) == 2 * N + 3  # sh, its two subshells, the /bin/trues
    missing = [p.pid for p in procs if p.exit is None]
    assert missing == [], f"{len(missing)} processes without an Exit"


BURST = 4000  # setpgid records, ~0.3 MB: fits the default perf buffer of one CPU


def burst_on(cpu: int) -> list[str]:
    """A traced process pinned to `cpu` that makes BURST successful setpgid calls."""
    code = (f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
            f"for _ in range({BURST}):\n    os.setpgid(0, 0)\n")
    return [sys.executable, "-c", code]


def test_bpftrace_sync_proves_every_cpus_buffer_was_read() -> None:
    """bpftrace reads one CPU's buffer after the other: an answer through one CPU says
    nothing about the others.  With bpftrace stopped, another CPU's buffer fills; the
    sync round sent then must not complete before all of it has been read."""
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed")
    cpus = bt.online_cpus()
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    b = bt.BpftraceBackend(BackendConfig(tracer_pid=os.getpid()))
    b.start()
    try:
        for _ in range(3):  # bpftrace reads the first CPU first: one handshake mostly fails
            assert read_when_proven(b, cpus) == BURST
        assert b.parser.lost == 0
    finally:
        b.close()


def read_when_proven(b: bt.BpftraceBackend, cpus: list[int]) -> int:
    """Burst records (stamped before the round) read by the time the round completed."""
    assert b._proc is not None
    assert b.sync(scaled(10.0))
    b.parser.take()
    os.kill(b._proc.pid, signal.SIGSTOP)
    try:
        # A record on the first CPU before the burst on the last: bpftrace's epoll then
        # lists the first CPU's buffer first, and reads an answer from the first CPU
        # before the burst (a single handshake would "prove" too early).
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[0]})
        b._prctl(0)
        os.sched_setaffinity(0, mask)
        subprocess.run(burst_on(cpus[-1]), check=True)
        b._start_round()  # while bpftrace cannot read anything
        assert b._round is not None
        proven = b._round.started
    finally:
        os.kill(b._proc.pid, signal.SIGCONT)
    assert b.sync(scaled(30.0)) and b.synced_until() == proven
    return sum(1 for e in b.parser.take() if isinstance(e, SetPGID) and e.timestamp < proven)
