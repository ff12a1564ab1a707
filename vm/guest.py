#!/usr/bin/python3
"""Runs inside a matrix guest (started by vm/matrix.py through `vng --exec`).

The guest sees the host's filesystem read-only, except /tmp and a few others
that virtme-ng overlays in memory, and `--out`, which is shared read-write
with the host.  This script runs the configured checks (vm/smoke.py,
vm/check_offsets.py), then the kernel test suite with the project's venv:

    .venv/bin/python -m pytest -m kernel tests/kernel

with PROCTRACE_REQUIRE_KERNEL=1 (a kernel test that would skip fails instead),
no pytest cache and no .pyc writes, and writes OUT/result.json (counts) and
OUT/junit.xml.  Its exit status is 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The project's venv (a Vagrant machine keeps it elsewhere: PROCTRACE_VENV_PY).
VENV_PY = Path(os.environ.get("PROCTRACE_VENV_PY", str(REPO / ".venv" / "bin" / "python")))
CHECKS = {
    "smoke": REPO / "vm" / "smoke.py",
    "offsets": REPO / "vm" / "check_offsets.py",
}


def say(msg: str) -> None:
    print(f"guest: {msg}", flush=True)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def junit_counts(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest junit XML file; errors count as failed."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def mount_headers(target: Path, dev: str = "/dev/vda") -> str | None:
    """Mount the ext4 header image over `target` (read-only); None or why not.

    Without it the headers are still there (the host's copy through 9p), only
    slower to read.
    """
    subprocess.run(["modprobe", "virtio_blk"], check=False)
    deadline = time.monotonic() + 10
    while not Path(dev).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not Path(dev).exists():
        return f"no {dev}"
    p = subprocess.run(["mount", "-t", "ext4", "-o", "ro", dev, str(target)],
                       capture_output=True, text=True, check=False)
    return None if p.returncode == 0 else f"mount failed: {p.stderr.strip()}"


def has_tests(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("test_*.py"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--release", required=True, help="the release the host meant to boot")
    ap.add_argument("--checks", default="none")
    ap.add_argument("--pytest-arg", action="append", default=[])
    ap.add_argument("--headers-disk", type=Path,
                    help="mount the header image (/dev/vda) over this folder")
    args = ap.parse_args()

    release = platform.release()
    say(f"booted {release} in {uptime():.1f} s (guest clock), {os.cpu_count()} vCPU")
    result: dict[str, object] = {"release": release, "passed": 0, "failed": 0, "skipped": 0}
    checks: list[dict[str, object]] = []
    result["checks"] = checks
    if release != args.release:
        say(f"FAIL: expected kernel {args.release}")
        result["failed"] = 1
        (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
        return 1

    if args.headers_disk is not None:
        t0 = time.monotonic()
        why = mount_headers(args.headers_disk)
        say(f"headers image on {args.headers_disk}: "
            f"{why or 'mounted'} in {time.monotonic() - t0:.1f} s")
    build = Path("/lib/modules") / release / "build"
    say(f"{build} -> {os.path.realpath(build)} "
        f"({'ok' if (build / 'include' / 'linux').is_dir() else 'MISSING headers'})")
    btf = Path("/sys/kernel/btf/vmlinux")
    say(f"{btf}: {'present' if btf.is_file() else 'absent'}")

    env = dict(os.environ)
    env.update({
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PROCTRACE_REQUIRE_KERNEL": "1",
        "PROCTRACE_CACHE": "/tmp/proctrace-cache",
        # Software emulation runs 10-80 times slower than the host: tests that wait
        # for the recorder with a timeout may scale it by this factor.
        "PROCTRACE_TEST_TIMEOUT_SCALE": os.environ.get("PROCTRACE_TEST_TIMEOUT_SCALE", "10"),
        # bpftrace's compile + attach takes 60-120 s here instead of 2 s.
        "PROCTRACE_BPFTRACE_START_TIMEOUT": "900",
        "HOME": "/tmp/guest-home",  # the host's home is read-only in the guest
    })
    Path("/tmp/guest-home").mkdir(exist_ok=True)
    python = str(VENV_PY) if VENV_PY.is_file() else sys.executable
    passed = failed = skipped = 0

    for name in [c for c in args.checks.split(",") if c and c != "none"]:
        script = CHECKS.get(name)
        t0 = time.monotonic()
        if script is None:
            say(f"FAIL check {name}: unknown")
            failed += 1
            continue
        say(f"check {name}: {script.name}")
        p = subprocess.run([python, str(script)], cwd=REPO, env=env, timeout=600)
        ok = p.returncode == 0
        secs = time.monotonic() - t0
        checks.append({"name": name, "ok": ok, "seconds": round(secs, 1)})
        say(f"check {name}: {'ok' if ok else f'FAILED (exit {p.returncode})'} in {secs:.1f} s")
        if ok:
            passed += 1
        else:
            failed += 1

    suite = REPO / "tests" / "kernel"
    if has_tests(suite):
        junit = args.out / "junit.xml"
        cmd = [python, "-m", "pytest", "-m", "kernel", str(suite.relative_to(REPO)),
               "-p", "no:cacheprovider", f"--junitxml={junit}", *args.pytest_arg]
        say(f"pytest: {' '.join(cmd[1:])}")
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=REPO, env=env)
        secs = time.monotonic() - t0
        if junit.is_file():
            tp, tf, ts = junit_counts(junit)
        else:
            tp, tf, ts = 0, 1, 0
        if p.returncode not in (0, 1) or (p.returncode == 1 and tf == 0):
            # pytest itself failed (usage error, internal error, interrupted), or
            # ran no test (exit 5: a -k selection that matches nothing is a bug)
            tf += 1
        passed, failed, skipped = passed + tp, failed + tf, skipped + ts
        result["pytest"] = {"exit": p.returncode, "passed": tp, "failed": tf, "skipped": ts,
                            "seconds": round(secs, 1)}
        say(f"pytest: exit {p.returncode}, {tp} passed, {tf} failed, {ts} skipped "
            f"in {secs:.1f} s")
    else:
        say(f"no kernel test suite in {suite} yet: only the checks ran")

    # "complete": this is the guest's last word, not a result cut short.
    result.update({"passed": passed, "failed": failed, "skipped": skipped,
                   "guest_seconds": round(uptime(), 1), "complete": True})
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    say(f"done: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
