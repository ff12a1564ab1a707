"""Per-test attribution (proctrace_bcc.attribution) and `analyze -d tests` (issue 15).

The fixtures are real recordings (tests/kernel/test_tests_view.py's files, recorded
in /tmp/fx): tests-bats.ndjson (`record --fds -- bats leak.bats`: test 1 forgets a
`sleep 2` holding fd 3, test 2 fails, test 3 passes) and tests-pytest.ndjson
(`record -- pytest test_demo.py`: one test leaves `sleep 2` running, one runs
`sh -c 'exit 3'`).  Expected outputs are tests/golden/tests/<case>.txt; to regenerate:

    PROCTRACE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_tests_view.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proctrace_bcc.analysis import restrict
from proctrace_bcc.attribution import (
    attribute,
    bats_description,
    bats_identity,
    env_identity,
)
from proctrace_bcc.read import read_recording
from proctrace_bcc.render.registry import MODES
from proctrace_bcc.tree import ProcessTree

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden" / "tests"
UPDATE = os.environ.get("PROCTRACE_UPDATE_GOLDEN") == "1"
CASES = {"bats": FIXTURES / "tests-bats.ndjson", "pytest": FIXTURES / "tests-pytest.ndjson"}
# What each test logged (pid and name) when the fixtures were recorded.
LOGGED = {
    "bats": [("starts a helper and forgets it", 7225), ("starts a helper and forgets it", 7239),
             ("fails on purpose", 7241), ("passes, with a comma", 7268)],
    "pytest": [("test_spawns_and_forgets", 7803), ("test_runs_a_failing_command", 7805),
               ("test_plain", 7807)],
}


def _tree(case: str) -> ProcessTree:
    return restrict(read_recording(CASES[case]), None)[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proctrace_bcc", "analyze", *args],
                          capture_output=True, text=True, cwd=TESTS.parent)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    p = _cli("-i", str(CASES[case]), "-d", "tests")
    assert p.returncode == 0, p.stderr
    expected = GOLDEN / f"{case}.txt"
    if UPDATE:
        expected.write_text(p.stdout)
    assert p.stdout == expected.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_logged_pid_is_its_tests(case: str) -> None:
    tree = _tree(case)
    att = attribute(tree)
    for name, pid in LOGGED[case]:
        (p,) = tree.find(pid)
        t = att.test_of(p)
        assert t is not None and t.name == name
    assert [t.name for t in att.tests] == list(dict.fromkeys(n for n, _ in LOGGED[case]))
    assert att.suite and all(att.test_of(p) is None for p in att.suite)


def test_bats_outcomes_leftovers_and_leak() -> None:
    att = attribute(_tree("bats"))
    leak, fail, ok = att.tests
    assert (leak.outcome, fail.outcome, ok.outcome) == ("ok", "failed", "ok")
    assert [p.pid for p in leak.leftovers] == [7239]
    assert [p.command for p in fail.failed] == ["/bin/false"]
    assert [t.number for t in att.tests] == [1, 2, 3]
    fds = _cli("-i", str(CASES["bats"]), "-d", "fds").stdout
    assert ("test 'starts a helper and forgets it' (leak.bats, test 1) started sleep "
            "(pid 7239, fd 3), which kept a pipe from bats open") in fds


def test_pytest_leftover_and_failure() -> None:
    att = attribute(_tree("pytest"))
    spawner, failing, plain = att.tests
    assert [p.pid for p in spawner.leftovers] == [7803]
    assert [p.status() for p in failing.failed] == ["exit 3"]
    assert not plain.leftovers and not plain.failed
    assert all(t.outcome is None and t.file == "test_demo.py" for t in att.tests)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_test_selection_in_every_mode(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = _cli("-i", str(CASES["bats"]), "-d", mode, "--test", "fails on purpose", "-o", str(out))
    assert p.returncode == 0, p.stderr
    text = out.read_text(errors="replace")
    def has(pid: int) -> bool:
        return re.search(rf"(?<![0-9]){pid}(?![0-9])", text) is not None

    assert has(7241)  # the test's own bats-exec-test
    assert not has(7239) and not has(7268)  # another test's processes


def test_test_selection_names_the_tests_when_none_matches() -> None:
    p = _cli("-i", str(CASES["pytest"]), "--test", "nope")
    assert p.returncode == 2
    assert p.stderr == ("proctrace-bcc: error: --test 'nope': no test of this recording "
                        "matches (tests: 'test_spawns_and_forgets', "
                        "'test_runs_a_failing_command', 'test_plain')\n")


def test_tree_marks_where_each_test_starts() -> None:
    text = _cli("-i", str(CASES["bats"])).stdout
    lines = text.splitlines()
    for n, name in ((1, "starts a helper and forgets it"), (2, "fails on purpose"),
                    (3, "passes, with a comma")):
        (i,) = [i for i, s in enumerate(lines) if f"▶ test '{name}' (leak.bats, test {n})" in s]
        assert "bats-exec-test" in lines[i + 1]


def test_bats_names_decode_back() -> None:
    # bats-preprocess: the simple form, and the -xx form when other characters appear
    assert bats_description("test_passes-2c_with_a_comma") == "passes, with a comma"
    assert bats_description("test_a-5fb-2dc") == "a_b-c"
    assert bats_description("my_function") == "my_function"  # a `# @test` function
    ident = bats_identity(["bash", "/usr/libexec/bats-core/bats-exec-test", "-T",
                           "--gather-test-outputs-in", "/tmp/o", "x.bats", "test_a", "4", "2",
                           "1"])
    assert ident is not None
    assert (ident.file, ident.name, ident.suite_number, ident.number) == ("x.bats", "test_a", 4, 2)
    assert bats_identity(["bash", "run.sh", "bats-exec-test"]) is None


def test_runner_variables() -> None:
    ident = env_identity({"PYTEST_CURRENT_TEST": "tests/t.py::TestA::test_b[1] (teardown)"})
    assert ident is not None and (ident.file, ident.name) == ("tests/t.py", "TestA::test_b[1]")
    ident = env_identity({"NEXTEST_TEST_NAME": "tests::it", "NEXTEST_BINARY_ID": "crate"})
    assert ident is not None and ident.key == ("nextest", "crate", "tests::it")
    assert env_identity({"BATS_TEST_FILENAME": "x.bats"}) is None  # exported by bats-exec-file
