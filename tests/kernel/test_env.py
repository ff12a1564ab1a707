"""record --env: the chosen environment variables at each exec, and nothing else.

Real runners (pytest from the venv, Debian's bats) record their test names per exec;
a secret-looking variable in CMD's environment never reaches the recording file (its
bytes are searched); a value that is not UTF-8 round-trips; one longer than the
bound (PT_ENV_MAX) is cut and flagged; without --env (or with `--env none`) nothing
is recorded.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path

import pytest

from proctrace_bcc.backends.abi import PT_ENV_MAX
from proctrace_bcc.envvars import RUNNERS
from proctrace_bcc.events import Exec, from_bytes
from tests.support import unavailable

from .conftest import Result, run_record

pytestmark = pytest.mark.kernel

PYTEST_FILE = """\
import subprocess


def test_first():
    subprocess.run(["/bin/echo", "marker-first"], check=True)


def test_second():
    subprocess.run(["/bin/echo", "marker-second"], check=True)
"""

BATS_FILE = """\
@test "first test" {
  /bin/echo marker-one
}

@test "second test" {
  /bin/echo marker-two
}
"""

# Children exec'd with exactly these environments (bytes: not all of it UTF-8).
ENV_CHILDREN = """\
import subprocess
subprocess.run(["/bin/echo", "bytes"], env={b"FOO": b"\\xff\\xfe-not-utf8", b"PATH": b"/bin"})
subprocess.run(["/bin/echo", "big"], env={b"BIG": b"x" * 5000, b"PATH": b"/bin"})
subprocess.run(["/bin/echo", "both"], env={b"BIG": b"y" * 10, b"FOO": b"plain"})
"""


def _execs(res: Result, marker: str) -> list[Exec]:
    return [e for e in res.rec.events if isinstance(e, Exec) and e.argv and e.argv[-1] == marker]


def test_pytest_names_per_exec(tmp_path: Path) -> None:
    f = tmp_path / "test_names.py"
    f.write_text(PYTEST_FILE)
    # --rootdir: test ids relative to tmp_path wherever the checkout and tmp are
    res = run_record(tmp_path, "bcc", [sys.executable, "-m", "pytest", "-q", "-p",
                                       "no:cacheprovider", f"--rootdir={tmp_path}", str(f)],
                     "--env", "tests")
    assert res.rc == 0, res.stdout + res.stderr
    for name in ("first", "second"):
        (ex,) = _execs(res, f"marker-{name}")
        assert ex.env is not None
        assert ex.env["PYTEST_CURRENT_TEST"] == f"test_names.py::test_{name} (call)"
    assert res.rec.header is not None
    assert res.rec.header.options["env"] == list(RUNNERS)


def test_bats_names_per_exec(tmp_path: Path) -> None:
    if shutil.which("bats") is None:
        unavailable("kernel", "bats not installed (apt-get install bats)")
    f = tmp_path / "names.bats"
    f.write_text(BATS_FILE)
    res = run_record(tmp_path, "bcc", ["bats", str(f)], "--env", "tests")
    assert res.rc == 0, res.stdout + res.stderr
    for number, marker in ((1, "marker-one"), (2, "marker-two")):
        (ex,) = _execs(res, marker)
        assert ex.env is not None
        assert ex.env["BATS_TEST_NUMBER"] == str(number)
        assert ex.env["BATS_SUITE_TEST_NUMBER"] == str(number)
        assert ex.env["BATS_TEST_FILENAME"] == str(f)
        # bats encodes the description into the function name
        word = "first" if number == 1 else "second"
        assert ex.env["BATS_TEST_NAME"].startswith(f"test_{word}")


def test_only_chosen_variables_reach_the_file(tmp_path: Path) -> None:
    secret = f"hunter2-{secrets.token_hex(8)}"
    custom = f"custom-{secrets.token_hex(8)}"
    env = {"AWS_SECRET_ACCESS_KEY": secret, "MY_PRIVATE_TOKEN": custom, "FOO": "chosen",
           # a name that starts like a chosen one, and a chosen name's prefix
           "FOOBAR": f"{secret}-x", "FO": f"{secret}-y"}
    res = run_record(tmp_path, "bcc", ["sh", "-c", "/bin/true; /bin/echo done"], "--env", "tests",
                     "--env", "FOO", env=env)
    assert res.rc == 0, res.stderr
    data = res.path.read_bytes()
    assert secret.encode() not in data and custom.encode() not in data
    (ex,) = _execs(res, "done")
    assert ex.env is not None and ex.env["FOO"] == "chosen"
    assert set(ex.env) <= {*RUNNERS, "FOO"}
    assert res.rec.header is not None and res.rec.header.options["env"] == [*RUNNERS, "FOO"]


def test_bytes_and_bound(tmp_path: Path) -> None:
    script = tmp_path / "children.py"
    script.write_text(ENV_CHILDREN)
    res = run_record(tmp_path, "bcc", [sys.executable, str(script)], "--env", "none",
                     "--env", "FOO", "--env", "BIG")
    assert res.rc == 0, res.stderr
    (ex,) = _execs(res, "bytes")
    assert ex.env == {"FOO": from_bytes(b"\xff\xfe-not-utf8")} and not ex.env_truncated
    assert b'"FOO":{"b64":' in res.path.read_bytes()  # written byte-exact
    (ex,) = _execs(res, "big")
    assert ex.env is not None and ex.env_truncated
    value = ex.env["BIG"]
    assert set(value) == {"x"} and len("BIG=") + len(value) + 1 == PT_ENV_MAX
    (ex,) = _execs(res, "both")
    assert ex.env == {"BIG": "y" * 10, "FOO": "plain"} and not ex.env_truncated
    assert res.rec.header is not None and res.rec.header.options["env"] == ["FOO", "BIG"]


@pytest.mark.parametrize("args", [(), ("--env", "tests", "--env", "none")],
                         ids=["default", "env-none"])
def test_no_env_records_no_environment(tmp_path: Path, args: tuple[str, ...]) -> None:
    res = run_record(tmp_path, "bcc", ["/bin/echo", "plain"], *args,
                     env={"PYTEST_CURRENT_TEST": "x.py::t (call)"})
    assert res.rc == 0, res.stderr
    (ex,) = _execs(res, "plain")
    assert ex.env is None
    assert res.rec.header is not None and "env" not in res.rec.header.options
    assert b'"env"' not in res.path.read_bytes()


def test_bpftrace_says_it_records_none(tmp_path: Path) -> None:
    if shutil.which("bpftrace") is None:
        unavailable("kernel", "bpftrace not installed")
    res = run_record(tmp_path, "bpftrace", ["/bin/echo", "bt"], "--env", "FOO",
                     env={"FOO": "x"})
    assert res.rc == 0, res.stderr
    assert "records no environment variables" in res.stderr
    (ex,) = _execs(res, "bt")
    assert ex.env is None
    assert res.rec.header is not None and "env" not in res.rec.header.options
