"""Issue 17, the recorder's side through the real CLI: doctor as a non-root user
explains instead of a traceback; a CMD that does not exist or cannot run is reported
as a shell does (127 / 126) before anything is loaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import scaled
from tests.unit.test_analyze_cli import REPO, cli, one_error

# 1. doctor as a non-root user explains instead of a traceback

@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to become another user")
def test_doctor_as_nobody_explains(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path))
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "proctrace_bcc", "doctor"],
                       capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=scaled(900), check=False)  # a user merges the header tree
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1
    assert "[!!] root (CAP_BPF, CAP_PERFMON): recording needs root" in p.stdout
    assert "sudo proctrace-bcc doctor" in p.stdout.splitlines()[-1]


# 2. a CMD that cannot run: 127 / 126 as a shell says, before loading anything

@pytest.mark.parametrize(("cmd", "code", "words"), [
    ("nosuchcmd-17", 127, "nosuchcmd-17: command not found"),
    ("./nosuch-17", 127, "./nosuch-17: No such file or directory"),
    ("/etc/passwd", 126, "/etc/passwd: Permission denied"),
    ("/tmp", 126, "/tmp: Is a directory"),
])
def test_cmd_that_cannot_run(tmp_path: Path, cmd: str, code: int, words: str) -> None:
    out = tmp_path / "r.ndjson"
    p = cli("record", "-o", str(out), "--", cmd, "arg")
    assert p.returncode == code
    assert one_error(p) == f"proctrace-bcc: error: {words}"
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="SUDO_UID is taken into account as root")
def test_cmd_is_checked_with_the_invoking_users_rights(tmp_path: Path) -> None:
    script = tmp_path / "mine.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o700)  # root's: nobody may not run it
    os.chmod(tmp_path, 0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO), SUDO_UID="65534", SUDO_GID="65534")
    p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "record", "-o",
                        str(tmp_path / "r.ndjson"), "--", str(script)],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 126, p.stderr
    assert p.stderr == f"proctrace-bcc: error: {script}: Permission denied\n"
