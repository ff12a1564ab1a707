"""`record`'s two parsers (record_options.py): the plain one reads every command line it
takes as typer reads it, leaves the others to typer, and `record` through the entry
point imports neither typer nor pydantic nor the analyze side."""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from unittest import mock

import pytest

from proctrace_bcc import cli, record_options
from proctrace_bcc.commands import app
from proctrace_bcc.record import RecordOptions
from tests.unit.test_analyze_cli import REPO
from tests.unit.test_analyze_cli import cli as run_cli

PLAIN = [
    [],
    ["--", "true"],
    ["true", "-o", "x"],  # CMD starts at the first word that is not an option
    ["ls", "--help"],
    ["-q", "-o", "-", "--", "sh", "-c", "exit 3"],
    ["-", "x"],
    ["--", "--", "x"],
    ["-o", "out.ndjson", "--"],
    ["--fds", "-o", "a", "-o", "b", "--no-fds", "--", "x"],  # the last one counts
    ["--output=f.ndjson", "--backend", "bpftrace", "--timeout", "2.5", "--grace", "3",
     "--env", "A", "--env=tests", "--buffer-pages", "64", "--argv-max", "0",
     "-b", "/usr/bin/bpftrace", "--bpftrace-path=bt", "--raw", "--as-root",
     "--kill-leftovers", "--no-cache", "--print-bpf", "--quiet", "--", "make", "-j2"],
    ["--backend", "nonsense", "--timeout", "0", "true"],  # record itself says no
]

LEFT_TO_TYPER = [
    ["--help"], ["-h"], ["-o", "x", "--help", "--", "true"], ["--bogus"], ["-qo", "x"],
    ["-ox"], ["-o"], ["--timeout", "abc"], ["--timeout", "-1"], ["--timeout", "1e3"],
    ["--buffer-pages", "0x10"], ["--buffer-pages", "007"], ["--quiet=1"], ["-o", ""],
    ["-o", "--", "x"], ["--out", "x"], ["-5"],
]


def by_typer(args: list[str]) -> RecordOptions:
    got: list[dict[str, Any]] = []

    def capture(values: dict[str, Any]) -> int:
        got.append(values)
        return 0

    with mock.patch.object(cli, "record", capture):
        code = app(["record", *args], prog_name="proctrace-bcc", standalone_mode=False)
    assert code == 0 and len(got) == 1
    return record_options.to_options(got[0])


@pytest.mark.parametrize("args", PLAIN, ids=" ".join)
def test_plain_command_lines_read_as_typer_reads_them(args: list[str]) -> None:
    values = record_options.parse(args)
    assert values is not None
    assert record_options.to_options(values) == by_typer(args)


@pytest.mark.parametrize("args", LEFT_TO_TYPER, ids=" ".join)
def test_the_others_are_left_to_typer(args: list[str]) -> None:
    assert record_options.parse(args) is None


def test_every_option_of_the_table_is_in_the_help() -> None:
    text = run_cli("record", "--help").stdout.decode()
    for o in record_options.RECORD:
        if not o.hidden:
            assert o.flags[-1] in text and (o.off is None or o.off in text), o.name


def test_record_imports_no_typer_pydantic_or_analyze() -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "proctrace_bcc", "record",
                        "--print-bpf", "-o", "/dev/null", "--", "true"],
                       capture_output=True, cwd=REPO, timeout=60, check=False)
    assert p.returncode == 0, p.stderr.decode()
    modules = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.decode().splitlines()
               if line.startswith("import time:")}
    assert "proctrace_bcc.record" in modules
    heavy = {m for m in modules if m.split(".")[0] in ("typer", "pydantic", "rich", "click")
             or m in ("proctrace_bcc.analysis", "proctrace_bcc.render", "proctrace_bcc.read",
                      "proctrace_bcc.commands")}
    assert not heavy
