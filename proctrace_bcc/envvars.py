"""Which environment variables `record --env` records at each exec.

None by default: reading the new image's environment at every exec costs about
20 % on an exec storm (bench/record_bench.py --only env, docs/benchmarks.md),
well past the 1 % a default may cost.  `--env tests` asks for the test runners'
set (:data:`RUNNERS`: what they export to the code under test, each name checked
in the runner's source or documentation; docs/format.md lists the sources), which
`analyze -d tests` uses to attribute processes to pytest/nextest tests (bats tests
are named by their bats-exec-test process without it); `--env NAME` adds a name.
Nothing else is ever recorded: the backends keep only these names (the BCC
program filters in the kernel).
"""

from __future__ import annotations

import re

from proctrace_bcc.backends.abi import PT_ENV_NAMES
from proctrace_bcc.errors import UsageError

RUNNERS: tuple[str, ...] = (
    "PYTEST_CURRENT_TEST",  # pytest: "file::test (phase)", set around each test phase
    "BATS_TEST_FILENAME",  # bats-exec-test exports these four (bats 1.8.2, Debian 12)
    "BATS_TEST_NAME",
    "BATS_SUITE_TEST_NUMBER",
    "BATS_TEST_NUMBER",
    "BATS_TEST_DESCRIPTION",  # set, not exported, by bats 1.8.2: seen where a test exports it
    "NEXTEST_TEST_NAME",  # cargo-nextest, per test process (0.9.116 and later)
    "NEXTEST_BINARY_ID",
)
TESTS = "tests"  # `--env tests`: the runners' set
NONE = "none"  # `--env none`: nothing (the default), dropping `tests` given before
NAME_MAX = 63  # bytes of a name ("NAME=" fits the program's 64-byte compare)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def choose(options: list[str] | None) -> tuple[str, ...]:
    """The names to record for `--env` options: each NAME given, with `tests` the
    runners' set (:data:`RUNNERS`); `none` drops what came before it.  UsageError for
    a name that cannot be a variable's."""
    names: list[str] = []
    for name in options or []:
        if name == NONE:
            names = []
            continue
        for n in RUNNERS if name == TESTS else (name,):
            if n not in names:
                names.append(_checked(n))
    if len(names) > PT_ENV_NAMES:
        raise UsageError(f"--env: at most {PT_ENV_NAMES} names (`tests` counts "
                         f"{len(RUNNERS)})")
    return tuple(names)


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > NAME_MAX:
        raise UsageError(f"--env {name!r}: not a variable name (letters, digits, _; "
                         f"at most {NAME_MAX} characters)")
    return name
