"""Which environment variables `record --env` records at each exec.

The default set is what test runners export to the code under test (each name
checked in the runner's source or documentation; docs/format.md lists the
sources).  Nothing else is ever recorded: the backends keep only these names
(the BCC program filters in the kernel).
"""

from __future__ import annotations

import re

from proctrace_bcc.backends.abi import PT_ENV_NAMES
from proctrace_bcc.errors import UsageError

DEFAULTS: tuple[str, ...] = (
    "PYTEST_CURRENT_TEST",  # pytest: "file::test (phase)", set around each test phase
    "BATS_TEST_FILENAME",  # bats-exec-test exports these four (bats 1.8.2, Debian 12)
    "BATS_TEST_NAME",
    "BATS_SUITE_TEST_NUMBER",
    "BATS_TEST_NUMBER",
    "BATS_TEST_DESCRIPTION",  # set, not exported, by bats 1.8.2: seen where a test exports it
    "NEXTEST_TEST_NAME",  # cargo-nextest, per test process (0.9.116 and later)
    "NEXTEST_BINARY_ID",
)
NONE = "none"  # `--env none`: no defaults
NAME_MAX = 63  # bytes of a name ("NAME=" fits the program's 64-byte compare)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def choose(options: list[str] | None) -> tuple[str, ...]:
    """The names to record for `--env` options: the defaults plus each NAME given;
    `none` drops the defaults.  UsageError for a name that cannot be a variable's."""
    opts = list(options or [])
    names: list[str] = [] if NONE in opts else list(DEFAULTS)
    for name in opts:
        if name == NONE or name in names:
            continue
        if not _NAME.fullmatch(name) or len(name) > NAME_MAX:
            raise UsageError(f"--env {name!r}: not a variable name (letters, digits, _; "
                             f"at most {NAME_MAX} characters)")
        names.append(name)
    if len(names) > PT_ENV_NAMES:
        raise UsageError(f"--env: at most {PT_ENV_NAMES} names (the defaults count; "
                         "`--env none` drops them)")
    return tuple(names)
