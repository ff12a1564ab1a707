"""The BCC program cache (backends/bcc/cache.py): a warm start records what a cold one
does; damaged or foreign entries are rejected and compiled again; concurrent first
runs both work; nothing stays attached once the recorder has closed.

Every test has its own cache directory (PROCTRACE_CACHE); one compile fills a seed
that tests copy, so each test compiles at most what it checks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc import cachedir
from proctrace_bcc.events import Header
from tests.support import scaled

from .conftest import REPO, Result, run_record

pytestmark = pytest.mark.kernel

# Sequential, so that every run makes the same events in the same order.
SCRIPT = ["sh", "-c", "/bin/true; sh -c 'exit 3'; /bin/echo hi >/dev/null; exit 5"]
VOLATILE = {"timestamp", "pid", "ppid", "parent_pid", "child_pid", "pgid", "parent_pgid",
            "child_pgid", "sid", "target_pid", "running"}


def _record(tmp_path: Path, cache: Path, *extra: str) -> Result:
    # A bound against hangs only: a cold run merges a header tree and compiles, which
    # takes minutes on a loaded machine.
    r = run_record(tmp_path, "bcc", SCRIPT, *extra, env={"PROCTRACE_CACHE": str(cache)},
                   timeout=900)
    assert r.rc == 5, r.stderr
    return r


def _shape(r: Result) -> list[tuple[str, dict[str, Any]]]:
    """The events without what differs from run to run (times, pids)."""
    return [(type(e).__name__, {k: v for k, v in dataclasses.asdict(e).items()
                                if k not in VOLATILE})
            for e in r.rec.events if not isinstance(e, Header)]


def _images(cache: Path) -> list[Path]:
    return sorted(cache.glob("bcc-*.image"))


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, Any]]]:
    """A cache filled by one cold recording of SCRIPT, and that recording's shape."""
    base = tmp_path_factory.mktemp("seed")
    cache = base / "cache"
    r = _record(base, cache)
    assert len(_images(cache)) == 1, list(cache.iterdir())
    return cache, _shape(r)


def _copy(seed_dir: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(seed_dir, cache, symlinks=True)
    return cache


def test_warm_start_records_what_a_cold_start_does(seed: tuple[Path, Any],
                                                   tmp_path: Path) -> None:
    cache = _copy(seed[0], tmp_path)
    (entry,) = _images(cache)
    inode = entry.stat().st_ino
    r = _record(tmp_path, cache)
    assert _shape(r) == seed[1]
    assert entry.stat().st_ino == inode, "the warm start compiled again"
    assert "cache" not in r.stderr, r.stderr


def test_no_cache_compiles_and_refreshes_the_entry(seed: tuple[Path, Any],
                                                   tmp_path: Path) -> None:
    cache = _copy(seed[0], tmp_path)
    (entry,) = _images(cache)
    inode = entry.stat().st_ino
    r = _record(tmp_path, cache, "--no-cache")
    assert _shape(r) == seed[1]
    (again,) = _images(cache)
    assert again.stat().st_ino != inode  # compiled and stored anew


def _damage(entry: Path, how: str) -> None:
    data = entry.read_bytes()
    if how == "flipped_byte":
        i = len(data) // 2
        entry.write_bytes(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:])
    elif how == "truncated":
        entry.write_bytes(data[: len(data) // 3])
    elif how == "wrong_key":  # intact, but stored under another key
        body = data.partition(b"\n")[2]
        entry.write_bytes(cachedir.MAGIC + cachedir.digest("another key", body) + b"\n" + body)
    elif how == "other_user":
        os.chown(entry, 65534, 65534)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["flipped_byte", "truncated", "wrong_key", "other_user"])
def test_rejected_entry_falls_back_to_compiling(seed: tuple[Path, Any], tmp_path: Path,
                                                how: str) -> None:
    cache = _copy(seed[0], tmp_path)
    (entry,) = _images(cache)
    _damage(entry, how)
    r = _record(tmp_path, cache)
    assert _shape(r) == seed[1]
    assert r.rec.header is not None and r.rec.header.backend == "bcc"
    notices = [line for line in r.stderr.splitlines() if "cache" in line]
    assert len(notices) == 1 and "compiling" in notices[0], r.stderr
    (fresh,) = _images(cache)  # compiled and stored again: valid, ours
    st = fresh.stat()
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600


def test_cache_directory_of_another_user_is_not_used(seed: tuple[Path, Any],
                                                     tmp_path: Path) -> None:
    cache = _copy(seed[0], tmp_path)
    os.chown(cache, 65534, 65534)
    r = _record(tmp_path, cache)
    assert _shape(r) == seed[1]
    assert any("not used" in line for line in r.stderr.splitlines()), r.stderr


def test_two_recorders_starting_at_once_leave_one_valid_entry(seed: tuple[Path, Any],
                                                              tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(seed[0], cache, symlinks=True,
                    ignore=shutil.ignore_patterns("bcc-*"))  # headers, offsets: no program
    env = dict(os.environ, PYTHONPATH=str(REPO), PROCTRACE_CACHE=str(cache))
    procs = []
    for i in range(2):
        out = tmp_path / f"rec{i}.ndjson"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "proctrace_bcc", "record", "-q", "--backend", "bcc", "-o",
             str(out), "--", *SCRIPT], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=scaled(900))
        assert p.returncode == 5, err
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []
    (entry,) = _images(cache)
    inode = entry.stat().st_ino
    r = _record(tmp_path, cache)  # loads it: the entry is valid
    assert _shape(r) == seed[1]
    assert entry.stat().st_ino == inode


def test_nothing_stays_attached_after_close(seed: tuple[Path, Any], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """close() returns at once and leaves the detach to a helper process: every
    program it loaded is gone from the kernel once that process has finished."""
    from proctrace_bcc.backends.base import BackendConfig
    from proctrace_bcc.backends.bcc import BccBackend
    from proctrace_bcc.backends.bcc.libbcc import prog_id

    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed (apt-get install bpftool)")
    monkeypatch.setenv("PROCTRACE_CACHE", str(_copy(seed[0], tmp_path)))
    b = BccBackend(BackendConfig(tracer_pid=os.getpid()))
    b.start()
    assert b.from_cache and b.loaded is not None
    ids = [prog_id(fd) for fd in b.loaded.prog_fds.values()]
    b.close()

    def attached() -> list[int]:
        return [i for i in ids if subprocess.run(
            ["bpftool", "prog", "show", "id", str(i)], capture_output=True).returncode == 0]

    deadline = time.monotonic() + scaled(60)  # a bound, not a measurement
    while attached() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert attached() == []
    perf = subprocess.run(["bpftool", "perf", "list"], capture_output=True, text=True).stdout
    assert not any(f"prog_id {i} " in perf + " " for i in ids), perf
