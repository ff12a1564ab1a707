"""tracefs: where the kernel lists the tracepoints that BCC and bpftrace attach to."""

from __future__ import annotations

import subprocess
from pathlib import Path

from proctrace_bcc.errors import RecorderError

MOUNT_POINT = "/sys/kernel/tracing"
# Where BCC and bpftrace look for it, in their order.
LOCATIONS = (MOUNT_POINT, "/sys/kernel/debug/tracing")


def find() -> str | None:
    """The mounted tracefs (the first of LOCATIONS with an `events/` directory), or None."""
    return next((p for p in LOCATIONS if Path(p, "events").is_dir()), None)


def ensure_mounted() -> None:
    """Mount tracefs at MOUNT_POINT if nothing is mounted where BCC and bpftrace look."""
    if find() is not None:
        return
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", MOUNT_POINT],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RecorderError(f"tracefs is not mounted and mounting it failed: {r.stderr.strip()}")
