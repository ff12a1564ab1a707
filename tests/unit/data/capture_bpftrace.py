"""Regenerate the bpftrace captures the parser tests read (needs root and bpftrace).

    sudo .venv/bin/python tests/unit/data/capture_bpftrace.py

Writes bpftrace-<version>-prepare.jsonl (sched_prepare_exec tells scripts
apart) and bpftrace-<version>-noprepare.jsonl (the fallback for kernels
before 6.10): bpftrace's raw stdout while WORKLOAD ran, handshake included.
The test expectations follow WORKLOAD: change both together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.backends.bpftrace import BpftraceBackend
from proctrace_bcc.backends.bpftrace.probe import version_str

HERE = Path(__file__).resolve().parent

WORKLOAD = r"""
cd "$1"
./script.sh "arg one" ""
/no/such/prog 2>/dev/null
setsid sh -c 'exit 0'
bash -c 'set -m; sleep 0.01 & wait'
sh -c 'kill -KILL $$'
/bin/echo "$(printf 'x%.0s' $(seq 450))" 'two words' 'new
line' >/dev/null
/usr/bin/python3 -c 'import os; os.execv("/bin/true", [b"true", b"\xff\xfe-bytes", b""])'
exit 0
"""


def capture(prepare: bool, workdir: Path) -> Path:
    b = BpftraceBackend(BackendConfig(tracer_pid=os.getpid()))
    b.force_prepare_exec = prepare
    lines: list[bytes] = []
    feed = b.parser.feed

    def tee(data: bytes) -> None:
        lines.append(data)
        feed(data)

    b.parser.feed = tee  # type: ignore[method-assign]
    b.start()
    try:
        p = subprocess.Popen(["sh", "-c", WORKLOAD, "sh", str(workdir)],
                             env={"PATH": "/usr/bin:/bin", "LANG": "C"})
        while p.poll() is None:
            b.poll(100)
        time.sleep(0.2)
        b.drain()
    finally:
        b.close()
    out = HERE / f"bpftrace-{version_str(b.version)}-{'prepare' if prepare else 'noprepare'}.jsonl"
    out.write_bytes(b"\n".join(lines) + b"\n")
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        script = Path(d, "script.sh")
        script.write_text("#!/bin/sh -e\nexit 3\n")
        script.chmod(0o755)
        for prepare in (True, False):
            print(capture(prepare, Path(d)))


if __name__ == "__main__":
    main()
