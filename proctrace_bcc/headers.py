"""Find a kernel header tree BCC can compile against.

BCC needs *a* header tree to compile at all; we never read struct layouts from
it (offsets come from BTF), so a distribution header package for another
kernel release works.  Order: $BCC_KERNEL_SOURCE, /lib/modules/$(uname -r)/build,
then the newest Debian/Ubuntu split header package under /usr/src merged into
one folder in the cache directory (cachedir.py; symlinks: fast, small).
"""

from __future__ import annotations

import atexit
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from proctrace_bcc import cachedir, safe_open
from proctrace_bcc.errors import BackendUnavailable

INSTALL_HINT = (
    "install a kernel header package (Debian: apt-get install linux-headers-amd64; "
    "Ubuntu: apt-get install linux-headers-generic)"
)


@dataclass(slots=True)
class HeaderTree:
    path: Path
    how: str  # one line: where it came from


def _usable(p: Path) -> bool:
    return (p / "include" / "linux").is_dir() and (p / "arch").is_dir()


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def _merge(common: Path, flavour: Path) -> Path:
    """One folder with `common` overlaid by `flavour` (what Debian splits in two), in
    the cache directory (one of this process's, removed at exit, if that is unusable)."""
    try:
        where = cachedir.ensure_dir()
    except cachedir.Rejected:
        where = Path(tempfile.mkdtemp(prefix="proctrace-headers-"))
        atexit.register(shutil.rmtree, where, True)
    dest = where / f"headers-{flavour.name}"
    stamp = dest / ".proctrace-merged"
    if stamp.exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for src in (common, flavour):
        subprocess.run(["cp", "-rs", "--remove-destination", f"{src}/.", str(tmp)],
                       check=True, capture_output=True)
    safe_open.write_new(tmp / ".proctrace-merged", f"{common}\n{flavour}\n".encode())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def find_header_tree(src_root: Path = Path("/usr/src")) -> HeaderTree:
    """The header tree to use, or BackendUnavailable saying what to install."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    release = platform.release()
    if env:
        p = Path(env)
        if _usable(p):
            return HeaderTree(p, f"BCC_KERNEL_SOURCE={env}")
        raise BackendUnavailable("bcc", f"BCC_KERNEL_SOURCE={env} is not a kernel header tree")
    build = Path("/lib/modules") / release / "build"
    if _usable(build):
        return HeaderTree(build, f"{build} (matches the running kernel)")
    flavours = []
    if src_root.is_dir():
        for d in src_root.iterdir():
            if d.name.startswith("linux-headers-") and not d.name.endswith("-common") and (
                d / "include"
            ).is_dir():
                flavours.append(d)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    flavours.sort(key=lambda d: (d.name.endswith(arch) or "generic" in d.name,
                                 _version_key(d.name)), reverse=True)
    for flavour in flavours:
        if _usable(flavour):
            return HeaderTree(flavour, f"{flavour} (another release; offsets come from BTF)")
        m = re.match(r"(linux-headers-[\d.]+-\d+)", flavour.name)
        if m:
            common = src_root / f"{m.group(1)}-common"
            if _usable(common):
                try:
                    merged = _merge(common, flavour)
                except (OSError, subprocess.CalledProcessError) as exc:
                    raise BackendUnavailable(
                        "bcc", f"cannot merge {common} and {flavour}: {exc}"
                    ) from None
                return HeaderTree(merged, f"{common} + {flavour} merged in {merged} "
                                          "(another release; offsets come from BTF)")
    raise BackendUnavailable("bcc", f"no kernel header tree found; {INSTALL_HINT}")
