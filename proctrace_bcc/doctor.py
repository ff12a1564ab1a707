"""`doctor`: what recording needs on this machine, and which backend `auto` picks."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from proctrace_bcc import tracefs
from proctrace_bcc.errors import ProctraceError


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def _bcc_importable() -> Check:
    spec = importlib.util.find_spec("bcc")
    if spec is None:
        return Check("BCC python module", False,
                     f"not importable from {sys.executable} (Debian/Ubuntu: apt-get install "
                     "python3-bpfcc; a venv needs --system-site-packages)")
    origin = spec.origin or "?"
    if "site-packages/bcc" in origin and "dist-packages" not in origin:
        return Check("BCC python module", False,
                     f"{origin} looks like the unrelated PyPI package `bcc`: pip uninstall bcc")
    return Check("BCC python module", True, origin)


def _bpftrace() -> Check:
    path = shutil.which("bpftrace")
    if path is None:
        return Check("bpftrace", False, "not on PATH (apt-get install bpftrace)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("bpftrace", False, f"{path}: {exc}")
    return Check("bpftrace", out.returncode == 0, f"{path}: {out.stdout.strip()}")


def _program_cache() -> Check:
    """Whether `record` (descendants of CMD, without and with --fds; no --env) starts warm."""
    from proctrace_bcc import envvars
    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import cache, program

    try:
        text = program.source()
        variants = {f"`record{fds}`": cache.key(text, program.cflags(BackendConfig(
            tracer_pid=1, fds=bool(fds), env=envvars.choose(None)))) for fds in ("", " --fds")}
    except ProctraceError as exc:
        return Check("BCC program cache", False, str(exc))
    ok, detail = cache.state(variants)
    return Check("BCC program cache", ok, detail)


def _tracefs(root: bool) -> Check:
    try:
        mounted = tracefs.find()
    except PermissionError as exc:  # a non-root user may not even look (mode 0700)
        return Check("tracefs", False, f"{exc.filename} is readable by root only: as this "
                     "user doctor cannot tell; `sudo proctrace-bcc doctor` can")
    return Check("tracefs", mounted is not None or root,
                 mounted or (f"not mounted; `record` mounts it at {tracefs.MOUNT_POINT}"
                             if root else "not mounted (mount -t tracefs nodev "
                             f"{tracefs.MOUNT_POINT})"))


def checks() -> list[Check]:
    out: list[Check] = []
    root = os.geteuid() == 0
    out.append(Check("root (CAP_BPF, CAP_PERFMON)", root,
                     "yes" if root else "recording needs root: run `sudo proctrace-bcc record`"))
    out.append(_tracefs(root))
    btf = Path("/sys/kernel/btf/vmlinux")
    if btf.exists():
        try:
            from proctrace_bcc.offsets import kernel_offsets

            n = len(kernel_offsets())
            out.append(Check("kernel BTF", True, f"{btf}: {n} struct offsets resolved"))
        except ProctraceError as exc:
            out.append(Check("kernel BTF", False, str(exc)))
    else:
        out.append(Check("kernel BTF", False,
                         f"{btf} missing: the kernel was built without CONFIG_DEBUG_INFO_BTF"))
    try:
        from proctrace_bcc.headers import find_header_tree

        tree = find_header_tree()
        out.append(Check("kernel header tree (for BCC to compile)", True, tree.how))
    except ProctraceError as exc:
        out.append(Check("kernel header tree (for BCC to compile)", False, str(exc)))
    out.append(_bcc_importable())
    out.append(_program_cache())
    out.append(_bpftrace())
    return out


def choose(cs: list[Check]) -> tuple[str | None, str]:
    ok = {c.name: c.ok for c in cs}
    base = ok["root (CAP_BPF, CAP_PERFMON)"] and ok["kernel BTF"]
    if base and ok["BCC python module"] and ok["kernel header tree (for BCC to compile)"]:
        return "bcc", "BCC is importable, a header tree exists and BTF gives the struct offsets"
    if base and ok["bpftrace"]:
        missing = [n for n in ("BCC python module", "kernel header tree (for BCC to compile)")
                   if not ok[n]]
        return "bpftrace", f"BCC cannot run ({', '.join(missing)}); bpftrace can"
    if not ok["root (CAP_BPF, CAP_PERFMON)"]:
        return None, ("not as this user: recording needs root, and some checks only root "
                      "can make; run `sudo proctrace-bcc doctor` for the failed checks above")
    return None, "no backend can record here: fix the failed checks above"


def run_doctor() -> int:
    cs = checks()
    print(f"proctrace-bcc doctor: kernel {platform.release()} ({platform.machine()})")
    for c in cs:
        print(f"  [{'ok' if c.ok else '!!'}] {c.name}: {c.detail}")
    backend, why = choose(cs)
    print(f"backend auto -> {backend or 'none'}: {why}")
    return 0 if backend else 1
