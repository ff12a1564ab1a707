"""Issue 17: the recorder's status line in a real terminal (tmux).

CMD prints while it is recorded: its output must come out intact, the status line
must never be drawn while CMD runs, and once CMD has exited with a process of its
tree still running, the line says so and names it (status.py), then is cleared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.conftest import REPO
from tests.support import scaled

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

SCRIPT = """#!/bin/sh
i=1
while [ $i -le 30 ]; do echo "line $i of the output"; i=$((i + 1)); sleep 0.03; done
sleep 3 >/dev/null &
echo "script done"
"""


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def test_status_line_never_mixes_with_cmds_output(tmp_path: Path) -> None:
    script = tmp_path / "prints.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    session = f"proctrace-test-{tmp_path.name}"
    _tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "60",
          f"env -i PATH=/usr/bin:/bin TERM=xterm PYTHONPATH={REPO} bash --norc --noprofile")
    try:
        _tmux("send-keys", "-t", session,
              f"{sys.executable} -m proctrace_bcc record --backend bcc -o "
              f"{tmp_path / 'r.ndjson'} -- {script}; echo RC\"=$?\"", "Enter")
        shots: list[str] = []
        deadline = time.monotonic() + scaled(120)
        while time.monotonic() < deadline:
            shots.append(_tmux("capture-pane", "-p", "-t", session))
            if any(ln.startswith("RC=") for ln in shots[-1].splitlines()):
                break
            time.sleep(0.05)
        final = shots[-1]
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    lines = final.splitlines()
    assert "RC=0" in lines, final
    for i in range(1, 31):  # every line of CMD's output, whole, on its own line
        assert f"line {i} of the output" in lines, final
    assert "script done" in lines
    assert "[proctrace-bcc]" not in final  # cleared once recording stopped
    drawn = [s for s in shots if "[proctrace-bcc]" in s]
    assert drawn, "the wait for the leftover sleep was not shown"
    for s in shots:
        if "[proctrace-bcc]" in s:
            assert "script done" in s  # never drawn while CMD ran
            status = next(ln for ln in s.splitlines() if "[proctrace-bcc]" in ln)
            assert status.startswith("[proctrace-bcc] prints.sh exited 0 at +"), status
            assert "waiting for 1 process still running: sleep 3 (pid " in status
            assert status.endswith("; --grace bounds this"), status
