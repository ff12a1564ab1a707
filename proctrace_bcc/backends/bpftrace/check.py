"""`python -m proctrace_bcc.backends.bpftrace --check`: compile, load, verify, attach
and handshake every variant of the script this machine can run (root)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.backends.bpftrace.backend import BpftraceBackend
from proctrace_bcc.backends.bpftrace.probe import (
    in_initial_pidns,
    kernel_has_prepare_exec,
    version_str,
)
from proctrace_bcc.backends.bpftrace.script import script_env
from proctrace_bcc.errors import RecorderError

DRY_RUN_VERSION = (0, 22, 0)  # `--dry-run`; before it `--emit-elf FILE` compiles without loading


def compile_only(b: BpftraceBackend) -> None:
    """Compile b's script for its bpftrace without loading it (root: BTF and tracefs)."""
    with tempfile.TemporaryDirectory(prefix="proctrace-check-") as d:
        script = Path(d, "proctrace.bt")
        script.write_text(b.render())
        if b.version >= DRY_RUN_VERSION:
            mode = ["--dry-run"]
        else:
            mode = ["--emit-elf", str(Path(d, "proctrace.elf"))]
        env = dict(os.environ)
        env.update(script_env(b.version, b.config.buffer_pages))
        r = subprocess.run([b.binary, *mode, str(script), *b.params()], capture_output=True,
                           text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
        errors = [ln for ln in r.stderr.splitlines()
                  if "error" in ln.lower() and "RLIMIT_MEMLOCK" not in ln]
        if r.returncode != 0 or errors:
            first = (errors or r.stderr.splitlines() or [f"exit {r.returncode}"])[0]
            raise RecorderError(f"bpftrace could not compile the script (prepare_exec="
                                f"{b.prepare_exec}, initial pidns={b.init_pidns}): {first}")


def variants(bpftrace_path: str | None = None) -> list[BpftraceBackend]:
    """One backend per script variant this machine can load (exec detection x pid namespaces)."""
    out = []
    for prepare in ([True, False] if kernel_has_prepare_exec() else [False]):
        for init in ([True, False] if in_initial_pidns() else [False]):
            b = BpftraceBackend(BackendConfig(tracer_pid=os.getpid(), bpftrace_path=bpftrace_path))
            b.force_prepare_exec = prepare
            b.init_pidns = init
            out.append(b)
    return out


def check(bpftrace_path: str | None = None) -> list[str]:
    """Compile, verify, attach and handshake every variant (root); one line per variant."""
    lines = []
    for b in variants(bpftrace_path):
        try:
            b.start()
            probes = b.parser.attached
        finally:
            b.close()
        lines.append(f"ok: {b.binary} {version_str(b.version)}: {probes} probes live after "
                     f"{b.startup_s:.2f} s (sched_prepare_exec: {b.prepare_exec}, "
                     f"initial pid namespace: {b.init_pidns})")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["--check"] or len(args) > 2:
        print("usage: python -m proctrace_bcc.backends.bpftrace --check [BPFTRACE]",
              file=sys.stderr)
        return 2
    try:
        for line in check(args[1] if len(args) > 1 else None):
            print(line)
    except RecorderError as exc:
        print(f"proctrace-bcc: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
