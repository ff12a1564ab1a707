"""What the backend needs to know of the machine: the bpftrace binary and its
version, the kernel's tracepoints and BTF, the pid namespace, the online CPUs."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from proctrace_bcc import tracefs
from proctrace_bcc.errors import BackendUnavailable, RecorderError

Version = tuple[int, int, int]

MIN_VERSION = (0, 17, 0)
PREPARE_EXEC_TP = "sched/sched_prepare_exec"  # Linux 6.10+
PROC_PID_INIT_INO = 0xEFFFFFFC  # the initial pid namespace's inode (include/linux/proc_ns.h)
CPU_ONLINE = "/sys/devices/system/cpu/online"


# ---------------------------------------------------------------------------
# The binary

def parse_version(text: str) -> Version | None:
    """`bpftrace --version` output ("bpftrace v0.17.0", "bpftrace v0.21.2-12-g1") -> (0, 17, 0)."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_str(v: Version) -> str:
    return "v{}.{}.{}".format(*v)


def find_bpftrace(path: str | None) -> str:
    """The bpftrace to run: `path` (--bpftrace-path) or the one on PATH."""
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BackendUnavailable("bpftrace", f"{path} is not an executable file")
        return path
    found = shutil.which("bpftrace") or next(
        (p for p in ("/usr/bin/bpftrace", "/usr/sbin/bpftrace", "/usr/local/bin/bpftrace")
         if os.access(p, os.X_OK)), None)
    if found is None:
        raise BackendUnavailable(
            "bpftrace", "no bpftrace on PATH (apt-get install bpftrace, or --bpftrace-path PATH)")
    return found


def bpftrace_version(binary: str) -> Version:
    """Run `bpftrace --version`; BackendUnavailable when it fails or is too old."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable("bpftrace", f"{binary} --version failed: {exc}") from None
    v = parse_version(out.stdout + " " + out.stderr) if out.returncode == 0 else None
    if v is None:
        text = (out.stdout + out.stderr).strip().splitlines()
        raise BackendUnavailable(
            "bpftrace", f"{binary} --version did not print a version: {text[:1]}")
    if v < MIN_VERSION:
        raise BackendUnavailable(
            "bpftrace", f"{binary} is {version_str(v)}, too old: proctrace-bcc needs bpftrace "
            f"{version_str(MIN_VERSION)} or newer")
    return v


# ---------------------------------------------------------------------------
# The kernel


def has_tracepoint(name: str) -> bool | None:
    """Whether tracefs lists tracepoint `name` ("sched/sched_prepare_exec"); None: no tracefs."""
    root = tracefs.find()
    return None if root is None else Path(root, "events", name).is_dir()


def kernel_has_prepare_exec(release: str | None = None) -> bool:
    """sched_prepare_exec exists (tracefs says so; without tracefs: Linux 6.10 or newer)."""
    seen = has_tracepoint(PREPARE_EXEC_TP)
    if seen is not None:
        return seen
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (6, 10)


def sibling_offset() -> int:
    """offsetof(struct task_struct, sibling) from the running kernel's BTF (0 if unknown).

    Only used to find a new child's pid in a non-initial pid namespace.
    """
    from proctrace_bcc.btf import BTF

    try:
        return BTF.load().member_offset("task_struct", "sibling")
    except (OSError, RecorderError):
        return 0


def in_initial_pidns() -> bool:
    """Whether this process lives in the initial pid namespace (pids are global)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
    except OSError:
        return False


def parse_cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-3,6,8-9") -> [0, 1, 2, 3, 6, 8, 9]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def online_cpus() -> list[int]:
    """The CPUs online now (each has a perf buffer bpftrace reads)."""
    try:
        with open(CPU_ONLINE) as f:
            cpus = parse_cpu_list(f.read())
    except (OSError, ValueError):
        cpus = []
    return cpus or sorted(os.sched_getaffinity(0))
