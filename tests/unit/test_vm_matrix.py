"""The VM matrix's host-side logic (vm/matrix.py, vm/guest.py, vm/vagrant_check.rb).

Booting guests is `make vm-test`; these check what can go wrong without one:
the kernel list, finding a Debian mirror in apt sources of both formats,
counting pytest's JUnit results, and the Vagrant-free Vagrantfile check.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vm_{name}", REPO / "vm" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


matrix = _load("matrix")
guest = _load("guest")


def test_configured_kernels_include_a_ci_kernel_with_the_offsets_check() -> None:
    specs = matrix.read_conf()
    ci = [s for s in specs if s.ci]
    assert ci, "vm-test-ci would boot nothing"
    assert any("offsets" in s.checks for s in ci)
    assert [s.name for s in matrix.select(specs, [], True)] == [s.name for s in ci]
    assert matrix.select(specs, [], False) == specs


@pytest.mark.parametrize("line, why", [
    ("debian-6.1 bookworm", "want 'name suite yes|no"),
    ("debian-6.1 bookworm maybe", "want 'name suite yes|no"),
    ("debian-6.1 bookworm yes smoke,fast", "unknown check 'fast'"),
])
def test_bad_conf_lines_name_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    conf = tmp_path / "kernels.conf"
    conf.write_text(f"# comment\n\n{line}\n")
    with pytest.raises(matrix.MatrixError, match=rf"kernels.conf:3: {why}"):
        matrix.read_conf(conf)


def test_unknown_kernel_name_is_refused() -> None:
    with pytest.raises(matrix.MatrixError, match="unknown kernel"):
        matrix.select(matrix.read_conf(), ["no-such-kernel"], False)


def test_mirrors_from_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTRACE_VM_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("PROCTRACE_VM_DEBIAN_SECURITY_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: trixie trixie-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security/\n"
        "Suites: trixie-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://elsewhere.example/debian\nSuites: x\nEnabled: no\n"
    )
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb [arch=amd64] https://vendor.example/apt stable main\n"
    )
    assert matrix.debian_mirrors(tmp_path) == (
        "http://mirror.example/debian", "http://mirror.example/debian-security")


def test_mirrors_from_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTRACE_VM_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("PROCTRACE_VM_DEBIAN_SECURITY_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    )
    # No security entry: the archive's sibling.
    assert matrix.debian_mirrors(tmp_path) == (
        "http://m.example/debian", "http://m.example/debian-security")


def test_no_debian_mirror_says_which_variable_to_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTRACE_VM_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text("deb http://archive.example/ubuntu noble main\n")
    with pytest.raises(matrix.MatrixError, match="PROCTRACE_VM_DEBIAN_MIRROR"):
        matrix.debian_mirrors(tmp_path)
    monkeypatch.setenv("PROCTRACE_VM_DEBIAN_MIRROR", "http://set.example/debian/")
    assert matrix.debian_mirrors(tmp_path)[0] == "http://set.example/debian"


def test_junit_counts_errors_as_failures(tmp_path: Path) -> None:
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" failures="2" '
        'skipped="3" tests="10"></testsuite></testsuites>'
    )
    assert guest.junit_counts(xml) == (4, 3, 3)


def test_summary_line_has_the_agreed_form() -> None:
    o = matrix.Outcome("debian-6.1", "6.1.0-56-amd64", passed=8, failed=1, skipped=2)
    assert o.line() == "kernel 6.1.0-56-amd64: 8 passed, 1 failed, 2 skipped"


@pytest.fixture
def ruby() -> str:
    exe = shutil.which("ruby")
    if exe is None:
        pytest.skip("ruby not installed (make vagrant-check installs it)")
    return exe


def _check(ruby: str, vagrantfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ruby, str(REPO / "vm" / "vagrant_check.rb"), str(vagrantfile)],
                          capture_output=True, text=True, timeout=60)


def test_vagrantfile_check_passes_on_ours(ruby: str) -> None:
    p = _check(ruby, REPO / "vagrant" / "Vagrantfile")
    assert p.returncode == 0, p.stderr
    assert "3 machines ok" in p.stdout


@pytest.mark.parametrize("old, new, why", [
    ('"debian12"   => "debian/bookworm64",', "", "missing machines: debian12"),
    ("path: PROVISION", 'path: "other.sh"', "not .*vm/provision.sh"),
    ("PROJECT, GUEST_PROJECT", '"/tmp", GUEST_PROJECT', "is not mounted"),
    ('Vagrant.configure("2")', 'Vagrant.configure("2") do |c| end; [].each',
     "no machines defined"),
])
def test_vagrantfile_check_catches_mistakes(ruby: str, tmp_path: Path,
                                            old: str, new: str, why: str) -> None:
    text = (REPO / "vagrant" / "Vagrantfile").read_text()
    assert old in text
    bad = tmp_path / "vagrant" / "Vagrantfile"
    bad.parent.mkdir()
    # Same place relative to vm/provision.sh as the real one.
    (tmp_path / "vm").symlink_to(REPO / "vm")
    bad.write_text(text.replace(old, new))
    p = _check(ruby, bad)
    assert p.returncode == 1
    assert re.search(why, p.stderr), p.stderr


# --- what the matrix host needs (vm/host-tools.conf) -------------------------------

def _outcome() -> Any:
    return matrix.Outcome("debian-6.1", "6.1.0-57-amd64")


def _result(**kw: object) -> dict[str, object]:
    r: dict[str, object] = {"release": "6.1.0-57-amd64", "passed": 9, "failed": 0,
                            "skipped": 0, "complete": True}
    r.update(kw)
    return r


def test_a_complete_guest_that_exited_0_passes() -> None:
    o = _outcome()
    matrix.judge(o, _result(), 0, "", None)
    assert (o.passed, o.failed, o.skipped, o.note) == (9, 0, 0, "")


def test_a_lost_exit_status_is_said_plainly_and_fails() -> None:
    o = _outcome()
    console = "virtme-ng-init: virtme-init: cannot find script I/O ports; make sure ...\n"
    matrix.judge(o, _result(), 255, console, None)
    assert o.failed == 1 and o.passed == 9
    assert "reported 9 passed, 0 failed, 0 skipped" in o.note
    assert "exit status did not come back (vng exited 255)" in o.note
    assert "udev" in o.note


def test_an_incomplete_result_fails_even_with_exit_0() -> None:
    o = _outcome()
    r = _result()
    del r["complete"]
    matrix.judge(o, r, 0, "", None)
    assert o.failed == 1 and "incomplete" in o.note


def test_no_result_fails_and_says_why() -> None:
    o = _outcome()
    matrix.judge(o, None, 255, "", None)
    assert o.failed == 1 and o.note == "no result from the guest (exit 255)"
    o = _outcome()
    matrix.judge(o, None, -9, "", 1500.0)
    assert o.note == "timed out after 1500 s"


def test_a_missing_host_tool_fails_fast_naming_its_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "host-tools.conf"
    conf.write_text("# comment\nsh  dash  shell\n"
                    "/nonexistent/systemd-udevd|/nope/udevd  udev  guest init\n")
    tools = matrix.read_host_tools(conf)
    assert [t.package for t in matrix.missing_tools(tools)] == ["udev"]
    monkeypatch.setattr(matrix, "read_host_tools", lambda: tools)
    with pytest.raises(matrix.MatrixError, match=r"systemd-udevd \(package udev; guest init\)"
                       r".*apt-get install udev"):
        matrix.check_tools()


def test_bad_host_tools_line_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "host-tools.conf"
    conf.write_text("qemu-system-x86_64 qemu-system-x86\n")
    with pytest.raises(matrix.MatrixError, match=r"host-tools.conf:1:"):
        matrix.read_host_tools(conf)


def _programs_run(path: Path) -> set[str]:
    """The programs a vm/*.py script runs: the first element of every literal argv list
    passed to subprocess.run/Popen/check_output or run_checked."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name not in ("run", "Popen", "check_output", "run_checked"):
            continue
        argv = node.args[0]
        if isinstance(argv, ast.List) and argv.elts and isinstance(argv.elts[0], ast.Constant):
            found.add(str(argv.elts[0].value))
    return found


def test_host_tools_name_every_program_the_matrix_and_guest_run() -> None:
    listed = {n for t in matrix.read_host_tools() for n in t.names}
    run = _programs_run(REPO / "vm" / "matrix.py") | _programs_run(REPO / "vm" / "guest.py")
    assert {"apt-get", "dpkg-deb", "depmod", "mke2fs", "modprobe", "mount"} <= run  # the scan works
    assert run - listed == set()
    # what virtme-ng and its guest init look for on the (shared) root filesystem
    for need in ("qemu-system-x86_64", "busybox", "udevadm", "/usr/lib/systemd/systemd-udevd",
                 "file"):
        assert need in listed


def _apt_packages_of(script: Path) -> set[str]:
    """Package names a provisioning script installs (apt_install lines, APT_PACKAGES=(...))."""
    text = script.read_text()
    pkgs: set[str] = set()
    for m in re.finditer(r"^\s*apt_install ([^\n$]+)$", text, re.M):
        pkgs.update(w for w in m.group(1).split() if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", w))
    arr = re.search(r"APT_PACKAGES=\(([^)]*)\)", text)
    if arr:
        pkgs.update(w for w in arr.group(1).split() if not w.startswith("#"))
    return pkgs


def test_every_package_the_ci_path_installs_is_listed_in_docs_vm() -> None:
    doc = (REPO / "docs" / "vm.md").read_text()
    section = doc[doc.index("## Packages the CI path installs"):]
    section = section[:section.find("\n## ", 1) if "\n## " in section[1:] else None]
    pkgs = (_apt_packages_of(REPO / "scripts" / "install.sh")
            | _apt_packages_of(REPO / "vm" / "provision.sh")
            | {t.package for t in matrix.read_host_tools()})
    assert {"python3-bpfcc", "udev", "qemu-system-x86", "chromium"} <= pkgs  # the scan works
    missing = sorted(p for p in pkgs if f"`{p}`" not in section)
    assert missing == [], f"docs/vm.md does not list {missing}"
    assert "host-tools.conf" in (REPO / "vm" / "provision.sh").read_text()
