#!/usr/bin/python3
"""Boot other kernels under QEMU (virtme-ng) and run the kernel test suite in each.

    vm/matrix.py list                       the configured kernels (vm/kernels.conf)
    vm/matrix.py cache [--ci] [NAME...]     download + unpack kernels into .cache/vm
    vm/matrix.py run   [--ci] [NAME...]     boot each kernel, run vm/guest.py inside

The guest sees the host's root filesystem read-only through 9p (virtme-ng), so
it runs the host's BCC, bpftrace and the project's venv against another kernel.
Kernel images and headers are Debian packages fetched with `apt-get download`
under a private apt configuration and unpacked with `dpkg-deb -x` into the
cache: nothing is installed on the host.  In the unpacked tree,
lib/modules/<release>/build (and source) point at a merged header tree (Debian
splits headers into -common and -amd64), and virtme-ng links the guest's
/lib/modules/<release> to that modules folder, so inside the guest
/lib/modules/$(uname -r)/build is the matching header tree.

Only the standard library is used: the host runs this with /usr/bin/python3.
Results: .cache/vm/results/<release>/ (console.log, result.json, junit.xml) and
one line per kernel, `kernel <release>: N passed, M failed, K skipped`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "vm" / "kernels.conf"
CACHE = Path(os.environ.get("PROCTRACE_VM_CACHE", str(REPO / ".cache" / "vm"))).resolve()
TOOLS_BIN = CACHE / "tools" / "bin"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 6 * 3600  # refresh the private package lists after this many seconds
KNOWN_CHECKS = ("smoke", "offsets")


class MatrixError(Exception):
    """A one-line reason the matrix cannot go on."""


@dataclass(frozen=True, slots=True)
class KernelSpec:
    name: str
    suite: str
    ci: bool
    checks: tuple[str, ...]


@dataclass(slots=True)
class CachedKernel:
    spec: KernelSpec
    release: str
    version: str
    root: Path  # the unpacked packages: boot/, lib/modules/, usr/src/
    headers: Path  # merged header tree (-common overlaid by -amd64)

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def headers_img(self) -> Path:
        return self.headers.parent / "headers.img"


@dataclass(slots=True)
class Outcome:
    name: str
    release: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    boot_seconds: float | None = None
    note: str = ""

    def line(self) -> str:
        return (f"kernel {self.release}: {self.passed} passed, {self.failed} failed, "
                f"{self.skipped} skipped")


def log(msg: str) -> None:
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def read_conf(path: Path = CONF) -> list[KernelSpec]:
    """The kernels of vm/kernels.conf; MatrixError naming file:line on a bad line."""
    specs: list[KernelSpec] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) not in (3, 4) or cols[2] not in ("yes", "no"):
            raise MatrixError(f"{path}:{lineno}: want 'name suite yes|no [checks]', got {raw!r}")
        checks = tuple(c for c in (cols[3].split(",") if len(cols) == 4 else []) if c)
        for c in checks:
            if c not in KNOWN_CHECKS:
                raise MatrixError(f"{path}:{lineno}: unknown check {c!r} "
                                  f"(known: {', '.join(KNOWN_CHECKS)})")
        specs.append(KernelSpec(cols[0], cols[1], cols[2] == "yes", checks))
    if len({s.name for s in specs}) != len(specs):
        raise MatrixError(f"{path}: duplicate kernel names")
    return specs


def select(specs: list[KernelSpec], names: Sequence[str], ci: bool) -> list[KernelSpec]:
    if names:
        by_name = {s.name: s for s in specs}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise MatrixError(f"unknown kernel(s) {', '.join(unknown)}; "
                              f"configured: {', '.join(by_name)}")
        return [by_name[n] for n in names]
    chosen = [s for s in specs if s.ci] if ci else specs
    if not chosen:
        raise MatrixError(f"no kernel selected from {CONF}")
    return chosen


# --------------------------------------------------------------------------- apt

def _host_sources(etc: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every 'deb' entry in the host's apt sources."""
    out: list[tuple[str, list[str]]] = []
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for ln in stanza.splitlines():
                    if ln.startswith("#") or ":" not in ln or ln[:1].isspace():
                        continue
                    k, v = ln.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" in fields.get("types", "").split() and \
                        fields.get("enabled", "yes").lower() != "no":
                    for uri in fields.get("uris", "").split():
                        out.append((uri, fields.get("suites", "").split()))
        elif f.suffix == ".list":
            for ln in text.splitlines():
                ln = re.sub(r"\[[^\]]*\]", " ", ln.split("#", 1)[0]).split()
                if len(ln) >= 3 and ln[0] == "deb":
                    out.append((ln[1], [ln[2]]))
    return out


def debian_mirrors(etc: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(archive URI, security URI): from the environment or the host's apt sources."""
    main = os.environ.get("PROCTRACE_VM_DEBIAN_MIRROR", "")
    sec = os.environ.get("PROCTRACE_VM_DEBIAN_SECURITY_MIRROR", "")
    for uri, suites in _host_sources(etc):
        path = uri.rstrip("/")
        if not sec and path.endswith("/debian-security"):
            sec = uri
        elif not main and path.endswith("/debian") and any("-" not in s or s.endswith(
                ("-updates", "-backports")) for s in suites):
            main = uri
    if not main:
        raise MatrixError("no Debian mirror in the host's apt sources; set "
                          "PROCTRACE_VM_DEBIAN_MIRROR (and PROCTRACE_VM_DEBIAN_SECURITY_MIRROR)")
    if not sec:
        sec = main.rstrip("/") + "-security"
    return main.rstrip("/"), sec.rstrip("/")


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache under CACHE/apt."""

    def __init__(self, suites: Sequence[str]) -> None:
        self.dir = CACHE / "apt"
        self.suites = sorted(set(suites))

    def opts(self) -> list[str]:
        d = self.dir
        return [
            "-o", f"Dir::Etc::SourceList={d / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={d / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={d / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={d / 'preferences.d'}",
            "-o", f"Dir::State::Lists={d / 'lists'}",
            "-o", f"Dir::State::status={d / 'status'}",
            "-o", f"Dir::Cache={d / 'cache'}",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1",
        ]

    def _sources_text(self) -> str:
        main, sec = debian_mirrors()
        lines = []
        for suite in self.suites:
            uri = sec if suite.endswith("-security") else main
            lines.append(f"deb [signed-by={KEYRING}] {uri} {suite} main")
        return "\n".join(lines) + "\n"

    def update(self, force: bool = False) -> None:
        d = self.dir
        for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "status").touch()
        (d / "preferences").touch()
        text = self._sources_text()
        src = d / "sources.list"
        stamp = d / "lists" / ".updated"
        fresh = (src.is_file() and src.read_text() == text and stamp.is_file()
                 and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE)
        if fresh and not force:
            return
        src.write_text(text)
        log(f"apt-get update (private lists in {d})")
        run_checked(["apt-get", *self.opts(), "-q", "update"])
        stamp.touch()

    def cache_cmd(self, *args: str) -> str:
        return run_checked(["apt-cache", *self.opts(), *args])

    def download(self, pkgs: Sequence[str], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        run_checked(["apt-get", *self.opts(), "-q", "download", *pkgs], cwd=dest)


def run_checked(cmd: Sequence[str], cwd: Path | None = None) -> str:
    p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        shown = [c for c in cmd if not c.startswith(("Dir::", "APT::", "Debug::", "-o"))]
        raise MatrixError(f"{shlex.join(shown)} failed ({p.returncode}): {' | '.join(tail)}")
    return p.stdout


def _depends(apt: PrivateApt, pkg: str, version: str) -> list[str]:
    """First alternatives of Depends of pkg=version."""
    text = apt.cache_cmd("show", "--no-all-versions", f"{pkg}={version}")
    m = re.search(r"^Depends: (.*)$", text, re.M)
    if not m:
        return []
    return [alt.split("|")[0].strip().split()[0] for alt in m.group(1).split(",")]


def resolve(apt: PrivateApt, spec: KernelSpec) -> tuple[str, str, list[str]]:
    """(release, version, packages to download) of the newest kernel in spec.suite."""
    rows = apt.cache_cmd("madison", "linux-image-amd64")
    versions = []
    for row in rows.splitlines():
        cols = [c.strip() for c in row.split("|")]
        if len(cols) == 3 and re.search(rf"\s{re.escape(spec.suite)}/main\s", f" {cols[2]} "):
            versions.append(cols[1])
    if not versions:
        raise MatrixError(f"{spec.name}: no linux-image-amd64 in suite {spec.suite}")
    version = versions[0]  # madison lists the newest first
    image = next((d for d in _depends(apt, "linux-image-amd64", version)
                  if d.startswith("linux-image-")), None)
    if image is None:
        raise MatrixError(f"{spec.name}: linux-image-amd64={version} names no image package")
    release = image.removeprefix("linux-image-").removesuffix("-unsigned")
    headers = f"linux-headers-{release}"
    common = [d for d in _depends(apt, headers, version) if d.endswith("-common")]
    if len(common) != 1:
        raise MatrixError(f"{spec.name}: {headers}={version} names no -common headers package")
    pkgs = [f"linux-image-{release}={version}", f"{headers}={version}", f"{common[0]}={version}"]
    return release, version, pkgs


# ------------------------------------------------------------------------- cache

def _stamp(release: str) -> Path:
    return CACHE / "kernels" / release / "READY.json"


def cached(spec: KernelSpec) -> CachedKernel | None:
    link = CACHE / "names" / spec.name
    if not link.is_file():
        return None
    release = link.read_text().strip()
    stamp = _stamp(release)
    if not stamp.is_file():
        return None
    info = json.loads(stamp.read_text())
    if info.get("suite") != spec.suite:
        return None
    kdir = CACHE / "kernels" / release
    return CachedKernel(spec, release, info["version"], kdir / "root", kdir / "headers")


def merge_headers(root: Path, release: str, dest: Path) -> None:
    """dest = linux-headers-*-common with linux-headers-<release> copied over it.

    Real files, not symlinks: the guest reads them through 9p, where every
    symlink costs more round trips (the image made from it avoids 9p altogether).
    """
    src = root / "usr" / "src"
    flavour = src / f"linux-headers-{release}"
    commons = [d for d in src.glob("linux-headers-*-common") if d.is_dir()]
    if not flavour.is_dir() or len(commons) != 1:
        raise MatrixError(f"unexpected header layout in {src}")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for d in (commons[0], flavour):
        run_checked(["cp", "-a", "--remove-destination", f"{d}/.", str(tmp)])
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def headers_image(headers: Path, image: Path) -> None:
    """An ext4 image of the header tree, attached to the guest as a virtio disk.

    Under software emulation every file lookup over 9p is slow, and a BCC
    compile looks up hundreds of headers: mounted from a block device, the
    guest's page cache serves them after the first compile.
    """
    total = 0
    count = 0
    for p in headers.rglob("*"):
        count += 1
        if p.is_file() and not p.is_symlink():
            total += (p.stat().st_size + 4095) // 4096 * 4096
    size_mb = (total + count * 512) * 5 // 4 // (1 << 20) + 32
    tmp = image.with_name(image.name + ".tmp")
    tmp.unlink(missing_ok=True)
    run_checked(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "headers",
                 "-E", "root_owner=0:0", "-d", str(headers), str(tmp), f"{size_mb}M"])
    tmp.rename(image)


def fill_cache(spec: KernelSpec, apt: PrivateApt, refresh: bool = False) -> CachedKernel:
    have = cached(spec)
    if have is not None and not refresh:
        return have
    t0 = time.monotonic()
    apt.update(force=refresh)
    release, version, pkgs = resolve(apt, spec)
    kdir = CACHE / "kernels" / release
    stamp = _stamp(release)
    if stamp.is_file() and json.loads(stamp.read_text()).get("version") == version:
        log(f"{spec.name}: {release} ({version}) already unpacked")
    else:
        debs = CACHE / "debs"
        log(f"{spec.name}: downloading {' '.join(pkgs)}")
        apt.download(pkgs, debs)
        shutil.rmtree(kdir, ignore_errors=True)
        root = kdir / "root"
        root.mkdir(parents=True)
        for pkg in pkgs:
            name, ver = pkg.split("=", 1)
            ver_file = ver.replace(":", "%3a")
            matches = list(debs.glob(f"{name}_{ver_file}_*.deb"))
            if len(matches) != 1:
                raise MatrixError(f"downloaded .deb for {pkg} not found in {debs}")
            run_checked(["dpkg-deb", "-x", str(matches[0]), str(root)])
        headers = kdir / "headers"
        merge_headers(root, release, headers)
        headers_image(headers, kdir / "headers.img")
        moddir = root / "lib" / "modules" / release
        for link in ("build", "source"):
            p = moddir / link
            if p.is_symlink() or p.exists():
                p.unlink()
            p.symlink_to(headers)
        run_checked(["depmod", "-a", "-b", str(root), release])
        image = root / "boot" / f"vmlinuz-{release}"
        if not image.is_file():
            raise MatrixError(f"{spec.name}: {image} missing after unpacking")
        stamp.write_text(json.dumps({"name": spec.name, "suite": spec.suite,
                                     "release": release, "version": version,
                                     "packages": pkgs}, indent=1) + "\n")
        log(f"{spec.name}: {release} ({version}) unpacked in {time.monotonic() - t0:.1f} s")
    (CACHE / "names").mkdir(parents=True, exist_ok=True)
    (CACHE / "names" / spec.name).write_text(release + "\n")
    got = cached(spec)
    assert got is not None
    return got


# --------------------------------------------------------------------------- run

def vng_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def vng_cmd(k: CachedKernel, kvm: bool, exec_cmd: str, rwdirs: Sequence[Path],
            cpus: int, memory: str, disk: bool = True) -> list[str]:
    cmd = [str(TOOLS_BIN / "vng"), "--run", str(k.image), "--force-9p",
           "--memory", memory, "--cpus", str(cpus), "--cwd", str(REPO)]
    if not kvm:
        cmd.append("--disable-kvm")
    if disk:
        # The header image becomes the guest's /dev/vda (vm/guest.py mounts it).
        cmd.append(f"--qemu-opts=-drive file={k.headers_img},if=virtio,format=raw,readonly=on")
    for d in rwdirs:
        cmd.append(f"--rwdir={d}")
    cmd += ["--exec", exec_cmd]
    return cmd


HOST_TOOLS = REPO / "vm" / "host-tools.conf"


@dataclass(frozen=True, slots=True)
class HostTool:
    names: tuple[str, ...]  # a name looked up in PATH, or absolute paths (any one will do)
    package: str
    who: str

    def found(self) -> bool:
        return any(os.access(n, os.X_OK) if n.startswith("/") else shutil.which(n) is not None
                   for n in self.names)


def read_host_tools(path: Path = HOST_TOOLS) -> list[HostTool]:
    """vm/host-tools.conf: `tool package who...` lines (the one list of host needs)."""
    tools = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise MatrixError(f"{path}:{n}: expected `tool package who`, got {raw.strip()!r}")
        tools.append(HostTool(tuple(parts[0].split("|")), parts[1], parts[2]))
    return tools


def missing_tools(tools: Sequence[HostTool]) -> list[HostTool]:
    return [t for t in tools if not t.found()]


def check_tools() -> None:
    """Fail before booting anything when a host tool (vm/host-tools.conf) is missing."""
    missing = missing_tools(read_host_tools())
    problems = [f"{t.names[0]} (package {t.package}; {t.who})" for t in missing]
    if not (TOOLS_BIN / "vng").is_file() or not (TOOLS_BIN / "virtme-run").is_file():
        problems.append(f"{TOOLS_BIN}/vng (virtme-ng)")
    if problems:
        pkgs = sorted({t.package for t in missing})
        fix = f"apt-get install {' '.join(pkgs)}, or " if pkgs else ""
        raise MatrixError(f"missing on this host: {'; '.join(problems)}: "
                          f"{fix}run vm/provision.sh --matrix-host")


def kvm_works(k: CachedKernel) -> tuple[bool, str]:
    """Boot `k` with KVM and run `true`: on this kind of host QEMU aborts at once."""
    forced = os.environ.get("PROCTRACE_VM_KVM", "auto")
    if forced in ("0", "no"):
        return False, "PROCTRACE_VM_KVM=0"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if forced in ("1", "yes"):
            raise MatrixError("PROCTRACE_VM_KVM=1 but /dev/kvm is not usable")
        return False, "no usable /dev/kvm"
    if forced in ("1", "yes"):
        return True, "PROCTRACE_VM_KVM=1"
    t0 = time.monotonic()
    cmd = vng_cmd(k, True, "echo proctrace-kvm-ok", [], 1, "512M", disk=False)
    try:
        p = subprocess.run(cmd, env=vng_env(), capture_output=True, text=True, timeout=90,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, "a KVM guest did not finish booting in 90 s"
    if p.returncode == 0 and "proctrace-kvm-ok" in p.stdout:
        return True, f"a KVM guest booted in {time.monotonic() - t0:.1f} s"
    why = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"KVM guest failed ({why[:120]})"


LIVE: set[subprocess.Popen[str]] = set()  # running guests, killed if we are


def kill_guests(*_: object) -> None:
    for proc in list(LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if _:
        raise SystemExit(130)


# What virtme-ng-init prints when it cannot find its virtio-serial script ports.
NO_SCRIPT_PORTS = "cannot find script I/O ports"


def judge(outcome: Outcome, result: dict[str, object] | None, rc: int, console: str,
          timed_out: float | None) -> None:
    """Fill `outcome` from the guest's result.json (None: none was written), the exit
    status of vng (`rc`) and the console log.  A guest whose end cannot be confirmed
    (result incomplete, or its exit status did not come back) counts as failed."""
    if result is None:
        outcome.failed = max(outcome.failed, 1)
        outcome.note = (f"timed out after {timed_out:.0f} s" if timed_out is not None
                        else f"no result from the guest (exit {rc})")
    else:
        _judge_result(outcome, result, rc)
    if outcome.failed and NO_SCRIPT_PORTS in console:
        outcome.note += ("; virtme-ng-init found no /dev/virtio-ports (is udev installed "
                         "on the host? see vm/host-tools.conf)")


def _judge_result(outcome: Outcome, result: dict[str, object], rc: int) -> None:
    outcome.passed = int(str(result.get("passed", 0)))
    outcome.failed = int(str(result.get("failed", 0)))
    outcome.skipped = int(str(result.get("skipped", 0)))
    if result.get("release") != outcome.release:
        outcome.failed += 1
        outcome.note = f"guest ran {result.get('release')}, not {outcome.release}"
    elif not result.get("complete") and outcome.failed == 0:
        outcome.failed += 1
        outcome.note = "the guest's result.json is incomplete (it stopped before its end)"
    elif rc != 0 and outcome.failed == 0:
        outcome.failed += 1
        outcome.note = (f"the guest reported {outcome.passed} passed, 0 failed, "
                        f"{outcome.skipped} skipped, but its exit status did not come back "
                        f"(vng exited {rc}): counted as a failure")


def run_kernel(k: CachedKernel, kvm: bool, cpus: int, memory: str, timeout: float,
               pytest_args: Sequence[str], verbose: bool) -> Outcome:
    out_dir = CACHE / "results" / k.release
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    guest = [
        "/usr/bin/python3", str(REPO / "vm" / "guest.py"), "--out", str(out_dir),
        "--release", k.release, "--checks", ",".join(k.spec.checks) or "none",
        "--headers-disk", str(k.headers),
        *(f"--pytest-arg={a}" for a in pytest_args),
    ]
    cmd = vng_cmd(k, kvm, shlex.join(guest), [out_dir], cpus, memory)
    outcome = Outcome(k.spec.name, k.release)
    console = out_dir / "console.log"
    t0 = time.monotonic()
    with console.open("w") as f:
        f.write(f"# {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env=vng_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        LIVE.add(proc)
        assert proc.stdout is not None
        deadline = t0 + timeout
        timed_out = False

        def watchdog() -> None:
            nonlocal timed_out
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    os.killpg(proc.pid, 9)
                    return
                time.sleep(1)

        threading.Thread(target=watchdog, daemon=True).start()
        for line in proc.stdout:
            f.write(line)
            f.flush()
            if line.startswith("guest: booted"):
                outcome.boot_seconds = time.monotonic() - t0
            if verbose:
                sys.stderr.write(f"[{k.spec.name}] {line}")
        rc = proc.wait()
        LIVE.discard(proc)
    outcome.seconds = time.monotonic() - t0
    result = out_dir / "result.json"
    judge(outcome, json.loads(result.read_text()) if result.is_file() else None, rc,
          console.read_text(errors="replace"), timeout if timed_out else None)
    if outcome.failed and not verbose:
        tail = console.read_text(errors="replace").splitlines()[-40:]
        sys.stderr.write("".join(f"[{k.spec.name}] {ln}\n" for ln in tail))
    return outcome


def cmd_run(args: argparse.Namespace) -> int:
    t_all = time.monotonic()
    check_tools()
    conf = read_conf()
    specs = select(conf, args.names, args.ci)
    apt = PrivateApt([s.suite for s in conf])
    kernels = [fill_cache(s, apt) for s in specs]
    kvm, why = kvm_works(kernels[0])
    log(f"{'KVM' if kvm else 'software emulation (TCG)'}: {why}")
    jobs = max(1, min(args.jobs, len(kernels)))
    cpus = args.cpus or max(1, (os.cpu_count() or 1) // jobs)
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(run_kernel, k, kvm, cpus, args.memory, args.timeout,
                           args.pytest_arg, args.verbose) for k in kernels]
    while not all(f.done() for f in futures):
        time.sleep(0.5)  # the main thread stays where SIGTERM's handler can run
    pool.shutdown()
    outcomes = [f.result() for f in futures]
    total = Outcome("all", "all")
    for o in outcomes:
        boot = f", booted in {o.boot_seconds:.1f} s" if o.boot_seconds is not None else ""
        note = f"; {o.note}" if o.note else ""
        log(f"{o.name} ({o.release}): {o.seconds:.1f} s{boot}{note}")
        total.passed += o.passed
        total.failed += o.failed
        total.skipped += o.skipped
    log(f"{len(outcomes)} kernel(s) in {time.monotonic() - t_all:.1f} s "
        f"({'KVM' if kvm else 'TCG'}, {jobs} at a time, {cpus} vCPU each)")
    for o in outcomes:
        print(o.line(), flush=True)
    print(f"matrix: {total.passed} passed, {total.failed} failed, {total.skipped} skipped",
          flush=True)
    return 1 if total.failed else 0


def cmd_cache(args: argparse.Namespace) -> int:
    conf = read_conf()
    specs = select(conf, args.names, args.ci)
    apt = PrivateApt([s.suite for s in conf])
    for s in specs:
        k = fill_cache(s, apt, refresh=args.refresh)
        print(f"{s.name}: {k.release} ({k.version}) {k.image}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for s in read_conf():
        k = cached(s)
        where = f"{k.release} ({k.version})" if k else "not cached"
        print(f"{s.name:<14} {s.suite:<20} ci={'yes' if s.ci else 'no ':<3} "
              f"checks={','.join(s.checks) or '-'}  {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vm/matrix.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="show the configured kernels").set_defaults(fn=cmd_list)
    for name, fn in (("cache", cmd_cache), ("run", cmd_run)):
        p = sub.add_parser(name)
        p.add_argument("names", nargs="*", help="kernel names from vm/kernels.conf")
        p.add_argument("--ci", action="store_true", help="only the kernels marked ci=yes")
        p.set_defaults(fn=fn)
        if name == "cache":
            p.add_argument("--refresh", action="store_true",
                           help="update the package lists and fetch newer kernels")
        else:
            p.add_argument("--jobs", "-j", type=int,
                           default=int(os.environ.get("PROCTRACE_VM_JOBS", "1")),
                           help="guests at a time (default 1)")
            p.add_argument("--cpus", type=int, default=0,
                           help="vCPUs per guest (default: host cores / jobs)")
            p.add_argument("--memory", default="2G", help="guest memory (default 2G)")
            p.add_argument("--timeout", type=float,
                           default=float(os.environ.get("PROCTRACE_VM_TIMEOUT", "1500")),
                           help="seconds per guest before it is killed (default 1500)")
            p.add_argument("--pytest-arg", action="append", default=[],
                           help="extra argument for pytest in the guest (repeatable)")
            p.add_argument("--verbose", "-v", action="store_true",
                           help="stream the guests' output")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, kill_guests)
    signal.signal(signal.SIGHUP, kill_guests)
    try:
        return int(args.fn(args))
    except MatrixError as exc:
        print(f"vm: error: {exc}", file=sys.stderr)
        return 2
    finally:
        kill_guests()


if __name__ == "__main__":
    sys.exit(main())
