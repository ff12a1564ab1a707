"""`analyze -d tests` on real runners (issue 15): every process attributed to its test.

Each test writes its name and a pid to a side file (bats: its own $BASHPID, which is
its bats-exec-test, and the background sleep it forgets; pytest: the subprocesses it
starts); the attribution must say the same.  Debian's bats (serial and --jobs 2 with
GNU parallel) and pytest from the venv (serial and -n 2 with pytest-xdist).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proctrace_bcc.attribution import Attribution, attribute
from tests.support import unavailable

from .conftest import REPO, Result, run_record

pytestmark = pytest.mark.kernel

BATS_FILE = """\
@test "starts a helper and forgets it" {
  echo "starts a helper and forgets it|$BASHPID" >> "$SIDE"
  sleep 2 &
  echo "starts a helper and forgets it|$!" >> "$SIDE"
}

@test "fails on purpose" {
  echo "fails on purpose|$BASHPID" >> "$SIDE"
  /bin/false
}

@test "passes, with a comma" {
  echo "passes, with a comma|$BASHPID" >> "$SIDE"
  /bin/true
}
"""

PYTEST_FILE = """\
import os
import subprocess


def _log(name, pid):
    with open(os.environ["SIDE"], "a") as f:
        f.write(f"{name}|{pid}\\n")


def test_spawns_and_forgets():
    p = subprocess.Popen(["sleep", "2"])
    _log("test_spawns_and_forgets", p.pid)


def test_runs_a_failing_command():
    r = subprocess.run(["sh", "-c", 'echo "test_runs_a_failing_command|$$" >> "$SIDE"; exit 3'])
    assert r.returncode == 3


def test_plain():
    subprocess.run(["sh", "-c", 'echo "test_plain|$$" >> "$SIDE"'], check=True)
"""


def _logged(side: Path) -> list[tuple[str, int]]:
    out = []
    for line in side.read_text().splitlines():
        name, pid = line.rsplit("|", 1)
        out.append((name, int(pid)))
    return out


def _check(res: Result, side: Path) -> Attribution:
    """Every pid a test logged belongs to that test, and to no other."""
    att = attribute(res.tree)
    logged = _logged(side)
    assert logged
    for name, pid in logged:
        (p,) = [q for q in res.tree.processes if q.pid == pid]
        t = att.test_of(p)
        assert t is not None and t.name == name, (name, pid, t and t.name)
    assert sorted(t.name for t in att.tests) == sorted({n for n, _ in logged})
    return att


def _tests_view(res: Result, *extra: str) -> str:
    p = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(res.path),
                        "-d", "tests", *extra], capture_output=True, text=True, cwd=REPO,
                       check=True)
    return p.stdout


def _bats(tmp_path: Path, *args: str, leaks: int = 1) -> None:
    """`leaks`: with --jobs, bats-exec-file sends each test's output to a file, not
    to the pipe bats reads: the forgotten sleep holds no pipe anyone waits on."""
    if shutil.which("bats") is None:
        unavailable("kernel", "bats not installed (apt-get install bats)")
    f = tmp_path / "leak.bats"
    f.write_text(BATS_FILE)
    side = tmp_path / "side.txt"
    res = run_record(tmp_path, "bcc", ["bats", *args, str(f)], "--fds", env={"SIDE": str(side)})
    assert res.rc == 1, res.stdout + res.stderr  # one test fails
    att = _check(res, side)
    by_name = {t.name: t for t in att.tests}
    leak = by_name["starts a helper and forgets it"]
    assert (leak.outcome, leak.number, leak.file) == ("ok", 1, str(f))
    (sleep_pid,) = [pid for n, pid in _logged(side) if n == leak.name][1:]
    assert [p.pid for p in leak.leftovers] == [sleep_pid]
    assert by_name["fails on purpose"].outcome == "failed"
    assert [p.command for p in by_name["fails on purpose"].failed] == ["/bin/false"]
    assert by_name["passes, with a comma"].outcome == "ok"
    assert not by_name["passes, with a comma"].leftovers
    text = _tests_view(res)
    assert "1 failed, 1 left processes running after it ended" in text
    assert f"left running: `sleep 2` (pid {sleep_pid}) ran on for" in text
    fds = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(res.path),
                          "-d", "fds"], capture_output=True, text=True, cwd=REPO, check=True)
    said = (f"test 'starts a helper and forgets it' (leak.bats, test 1) started sleep "
            f"(pid {sleep_pid}, fd 3), which kept a pipe from bats open")
    assert (said in fds.stdout) == bool(leaks)
    assert f"{leaks} leaked descriptor" in text
    # --test keeps that test's processes only, in every mode
    only = _tests_view(res, "--test", "forgets")
    assert "1 test," in only and "fails on purpose" not in only
    tree = subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", "-i", str(res.path),
                           "--test", "fails on purpose"], capture_output=True, text=True,
                          cwd=REPO, check=True).stdout
    assert "▶ test 'fails on purpose' (leak.bats, test 2)" in tree
    assert "sleep 2" not in tree and "leak.bats, test 1" not in tree


def test_bats(tmp_path: Path) -> None:
    _bats(tmp_path)


def test_bats_jobs_2(tmp_path: Path) -> None:
    if shutil.which("parallel") is None:
        unavailable("kernel", "GNU parallel not installed (apt-get install parallel)")
    _bats(tmp_path, "--jobs", "2", leaks=0)


def _pytest(tmp_path: Path, *args: str) -> None:
    f = tmp_path / "test_demo.py"
    f.write_text(PYTEST_FILE)
    side = tmp_path / "side.txt"
    # CMD inherits this test's own PYTEST_CURRENT_TEST: a test outside the recording
    # --rootdir: test ids relative to tmp_path wherever the checkout and tmp are
    res = run_record(tmp_path, "bcc", [sys.executable, "-m", "pytest", "-q", "-p",
                                       "no:cacheprovider", f"--rootdir={tmp_path}", *args,
                                       str(f)],
                     "--env", "tests", env={"SIDE": str(side)})
    assert res.rc == 0, res.stdout + res.stderr
    att = _check(res, side)
    by_name = {t.name: t for t in att.tests}
    spawner = by_name["test_spawns_and_forgets"]
    (sleep_pid,) = [pid for n, pid in _logged(side) if n == spawner.name]
    assert [p.pid for p in spawner.leftovers] == [sleep_pid]
    failing = by_name["test_runs_a_failing_command"]
    assert [p.status() for p in failing.failed] == ["exit 3"]
    assert not failing.leftovers and not by_name["test_plain"].failed
    assert all(t.file == "test_demo.py" for t in att.tests)
    text = _tests_view(res)
    assert f"left running: `sleep 2` (pid {sleep_pid}) ran on for" in text


def test_pytest(tmp_path: Path) -> None:
    _pytest(tmp_path)


def test_pytest_xdist(tmp_path: Path) -> None:
    if importlib.util.find_spec("xdist") is None:
        unavailable("kernel", "pytest-xdist not installed (pip install pytest-xdist)")
    _pytest(tmp_path, "-n", "2")
