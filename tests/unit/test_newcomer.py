"""Issue 17: what a new user meets first, through the real CLI.

analyze without -i on a terminal, tree lines fitted to a terminal (--wide), the fds
report bounded (--all), -p titles, --help.  doctor as a non-root user and a CMD that
cannot run: test_newcomer_record.py; the recorder's status line in a terminal:
tests/kernel/test_newcomer.py (it records).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import read_to_eof
from tests.unit.test_analyze_cli import INPUTS, REPO, cli

FIXTURES = REPO / "tests" / "fixtures"


def _tty(args: list[str], cwd: Path, columns: int = 80) -> tuple[int, str, str]:
    """Run the CLI with stdin and stdout a terminal (a pty), stderr a pipe."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), TERM="dumb", COLUMNS=str(columns),
               NO_COLOR="1")
    env.pop("PROCTRACE_UPDATE_GOLDEN", None)
    p = subprocess.Popen([sys.executable, "-m", "proctrace_bcc", *args], stdin=slave,
                         stdout=slave, stderr=subprocess.PIPE, env=env, cwd=cwd)
    os.close(slave)
    out = read_to_eof(master)
    assert p.stderr is not None
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out.decode().replace("\r\n", "\n"), err


# 5. analyze without -i on a terminal

def test_analyze_on_a_terminal_reads_records_default_output(tmp_path: Path) -> None:
    shutil.copy(INPUTS / "ours-ci.ndjson", tmp_path / "proctrace.ndjson")
    code, out, err = _tty(["analyze"], tmp_path)
    assert code == 0, err
    assert out.startswith("proctrace-bcc tree of ./ci.sh --fast: 11 processes")
    assert err == ("proctrace-bcc: reading ./proctrace.ndjson (record's default output; "
                   "-i PATH for another, -i - for stdin)\n")


def test_analyze_on_a_terminal_without_a_recording_says_what_to_pass(tmp_path: Path) -> None:
    code, out, err = _tty(["analyze"], tmp_path)
    assert code == 2 and out == ""
    assert err == ("proctrace-bcc: error: no recording: pass -i PATH (record writes "
                   "./proctrace.ndjson by default, and there is none here) or pipe one to "
                   "stdin\n")


def test_analyze_reads_stdin_when_it_is_not_a_terminal() -> None:
    data = (INPUTS / "ours-ci.ndjson").read_bytes()
    assert cli("analyze", stdin=data).stdout == cli(
        "analyze", "-i", str(INPUTS / "ours-ci.ndjson")).stdout


# 6. tree lines fit a terminal; --wide and files keep them whole

def test_tree_fits_the_terminal_width(tmp_path: Path) -> None:
    path = str(INPUTS / "ours-argv.ndjson")
    code, out, err = _tty(["analyze", "-i", path], tmp_path, columns=60)
    assert code == 0, err
    tree = out.split("\n\n")[1].splitlines()
    assert tree and all(len(line) < 60 for line in tree), tree
    assert sum("…  (" in line for line in tree) >= 4  # commands cut, outcomes kept
    code, wide, err = _tty(["analyze", "-i", path, "--wide"], tmp_path, columns=60)
    whole = cli("analyze", "-i", path).stdout.decode()
    assert wide == whole and any(len(line) >= 60 for line in whole.splitlines())


def test_fork_lines_name_the_program_they_forked_from() -> None:
    out = cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson")).stdout.decode()
    assert "1008 (fork of ci.sh)  (90 µs, exit 127 ✗)" in out
    assert "(fork) ./ci.sh" not in out


# 7. the fds report: leaks first, the table bounded unless --all

def test_fds_table_is_bounded_unless_all() -> None:
    path = str(FIXTURES / "leak-group-term.ndjson")
    short = cli("analyze", "-i", path, "-d", "fds").stdout.decode()
    full = cli("analyze", "-i", path, "-d", "fds", "--all").stdout.decode()
    assert short.index("Leaked descriptors") < short.index("Pipes and sockets")
    assert "more pipes and sockets (--all lists them)" in short
    assert "(--all lists them)" not in full
    assert len(full.splitlines()) > len(short.splitlines())
    assert short.count("\npipe:[") == 20  # CHANNELS_MAX tables
    # the leaked pipe's table comes first, the leaker's row marked
    first = short.split("\n\npipe:[", 1)[1]
    assert "<- leaked" in first.split("\n\n")[0]


# 9. -p: the title names the subtree and its own duration, in every mode

@pytest.mark.parametrize("mode", ["tree", "mermaid", "summary", "html", "fds",
                                  "chrome-trace"])
def test_subtree_title(mode: str) -> None:
    out = cli("analyze", "-i", str(INPUTS / "ours-ci.ndjson"), "-p", "1003", "-d",
              mode).stdout.decode()
    assert "./ci.sh --fast" not in out
    if mode in ("tree", "mermaid", "summary", "html", "chrome-trace"):
        assert "./run-tests unit (pid 1003)" in out
    if mode == "tree":
        assert out.startswith("proctrace-bcc tree of ./run-tests unit (pid 1003): 3 "
                              "processes, 3 failed, 35.0 ms\n")
    if mode == "summary":
        assert "- **Duration:** 35.0 ms" in out


# 11. --help: flags read as flags, values named as the README names them

def test_help_reads_like_the_readme() -> None:
    rec = cli("record", "--help").stdout.decode()
    ana = cli("analyze", "--help").stdout.decode()
    for text in (rec, ana):
        assert "<bool>" not in text and "<str>" not in text and "<float>" not in text
    assert "Usage: proctrace-bcc record [OPTIONS] [-- CMD ARGS]..." in rec
    for flag in ("--timeout SECS", "--grace SECS", "-o, --output PATH",
                 "--backend auto|bcc|bpftrace", "--buffer-pages PAGES", "--argv-max BYTES"):
        assert flag in rec, flag
    assert "  --kill-leftovers  " in rec and "  -q, --quiet  " in rec
    for opt in ("-i, --input PATH|-", "-d, --display MODE", "-p, --root-pid ROOT_PID",
                "--wide", "--all"):
        assert opt in ana, opt
    assert "summary" in ana  # every mode of the registry
