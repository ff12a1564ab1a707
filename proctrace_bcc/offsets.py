"""Kernel struct offsets the BPF programs need, read from the running kernel's BTF.

The BPF C never uses a kernel header's struct layout: it reads memory at
``(char *)ptr + OFF_...`` with values computed here and passed to BCC as
``-DOFF_...=N`` cflags (see `defines`).  `REQUIRED` and `SIZES` list exactly
the OFF_/SIZE_ names bpf_programs/proctrace.bpf.c uses (tests/unit/test_btf.py
proves it: a missing member aborts start-up, so nothing unused may be listed).
To need one more offset, use it in the C and add one line here; every define is
checked against a C compiler's ``offsetof`` by tests/unit/test_btf.py.

A member path may list alternatives separated by ``|`` (first one present
wins) for members that kernels renamed; paths may be dotted (``live.counter``)
and index arrays (``pids[2]``); members of anonymous structs/unions resolve as
in C.

The running kernel's values are kept in the cache directory (cachedir.py), keyed by
the BTF's identity (btf.identity: no parse), these lists and our version, so a warm
start does not read /sys/kernel/btf/vmlinux at all.

Run ``python -m proctrace_bcc.offsets [BTF_FILE]`` to print every value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

from proctrace_bcc import __version__, btf, cachedir
from proctrace_bcc.btf import BTF, VMLINUX_BTF
from proctrace_bcc.errors import ProctraceError, RecorderError

# (define name, struct, member path): byte offset of the member in the struct.
REQUIRED: list[tuple[str, str, str]] = [
    ("OFF_TASK_TGID", "task_struct", "tgid"),
    ("OFF_TASK_PID", "task_struct", "pid"),
    ("OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("OFF_TASK_SIGNAL", "task_struct", "signal"),
    ("OFF_TASK_EXIT_CODE", "task_struct", "exit_code"),
    ("OFF_TASK_MM", "task_struct", "mm"),
    ("OFF_TASK_THREAD_PID", "task_struct", "thread_pid"),
    ("OFF_TASK_FILES", "task_struct", "files"),
    ("OFF_SIGNAL_PIDS", "signal_struct", "pids"),
    ("OFF_SIGNAL_LIVE", "signal_struct", "live.counter"),
    ("OFF_SIGNAL_FLAGS", "signal_struct", "flags"),
    ("OFF_SIGNAL_GROUP_EXIT_CODE", "signal_struct", "group_exit_code"),
    ("OFF_PID_LEVEL", "pid", "level"),
    ("OFF_PID_NUMBERS", "pid", "numbers"),
    ("OFF_UPID_NR", "upid", "nr"),
    ("OFF_UPID_NS", "upid", "ns"),
    ("OFF_PIDNS_NS", "pid_namespace", "ns"),
    ("OFF_NS_COMMON_INUM", "ns_common", "inum"),
    ("OFF_MM_ARG_START", "mm_struct", "arg_start"),
    ("OFF_MM_ARG_END", "mm_struct", "arg_end"),
    ("OFF_MM_ENV_START", "mm_struct", "env_start"),
    ("OFF_MM_ENV_END", "mm_struct", "env_end"),
    ("OFF_MM_START_STACK", "mm_struct", "start_stack"),
    ("OFF_BINPRM_FILENAME", "linux_binprm", "filename"),
    ("OFF_BINPRM_INTERP", "linux_binprm", "interp"),
    ("OFF_BINPRM_ARGC", "linux_binprm", "argc"),
    ("OFF_BINPRM_ENVC", "linux_binprm", "envc"),
    ("OFF_FILES_FDT", "files_struct", "fdt"),
    ("OFF_FDT_MAX_FDS", "fdtable", "max_fds"),
    ("OFF_FDT_FD", "fdtable", "fd"),
    ("OFF_FDT_OPEN_FDS", "fdtable", "open_fds"),
    ("OFF_FILE_F_INODE", "file", "f_inode"),
    ("OFF_FILE_F_FLAGS", "file", "f_flags"),
    ("OFF_FILE_F_PATH", "file", "f_path"),
    ("OFF_PATH_DENTRY", "path", "dentry"),
    ("OFF_INODE_I_MODE", "inode", "i_mode"),
    ("OFF_INODE_I_INO", "inode", "i_ino"),
    ("OFF_INODE_I_SB", "inode", "i_sb"),
    ("OFF_INODE_I_RDEV", "inode", "i_rdev"),
    ("OFF_SB_S_DEV", "super_block", "s_dev"),
    ("OFF_DENTRY_D_NAME", "dentry", "d_name"),
    ("OFF_QSTR_NAME", "qstr", "name"),
]

# (define name, C type): size in bytes.
SIZES: list[tuple[str, str]] = [
    ("SIZE_UPID", "struct upid"),
]

_cache: dict[str, dict[str, int]] = {}


def choose_path(btf: BTF, struct: str, member_spec: str) -> str:
    """The first alternative of `member_spec` ("a.b|c") present in `struct`.

    RecorderError naming struct.member when none is present.
    """
    alternatives = [p.strip() for p in member_spec.split("|") if p.strip()]
    for path in alternatives:
        if btf.has_member(struct, path):
            return path
    try:
        # Let the BTF reader say why the first alternative is missing.
        btf.member(struct, alternatives[0] if alternatives else member_spec)
    except RecorderError as exc:
        others = ", ".join(alternatives[1:])
        raise RecorderError(f"{exc} (also tried: {others})" if others else str(exc)) from None
    raise RecorderError(f"BTF {btf.source}: bad member path {member_spec!r} for {struct}")


def offsets_from_btf(btf: BTF) -> dict[str, int]:
    """Every define of REQUIRED and SIZES with its value on this BTF."""
    values: dict[str, int] = {}
    for define, struct, spec in REQUIRED:
        try:
            values[define] = btf.member_offset(struct, choose_path(btf, struct, spec))
        except RecorderError as exc:
            raise RecorderError(f"{exc} (needed for {define})") from None
    for define, ctype in SIZES:
        try:
            values[define] = btf.type_size(ctype)
        except RecorderError as exc:
            raise RecorderError(f"{exc} (needed for {define})") from None
    return values


def defines(offsets: dict[str, int]) -> list[str]:
    """BCC cflags: ["-DOFF_TASK_TGID=2504", ...]."""
    return [f"-D{name}={value}" for name, value in offsets.items()]


def cache_key() -> str:
    """What the running kernel's offsets depend on (see the module's doc)."""
    return json.dumps([__version__, btf.identity(VMLINUX_BTF), REQUIRED, SIZES])


def cache_name(key: str) -> str:
    return f"offsets-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _cached_kernel_offsets(use_cache: bool) -> dict[str, int]:
    """The running kernel's offsets from the cache (use_cache), else from its BTF (then
    stored)."""
    key = cache_key()
    name = cache_name(key)
    if use_cache:
        try:
            values = json.loads(cachedir.load(name, key))
            names = [d for d, _, _ in REQUIRED] + [d for d, _ in SIZES]
            if (isinstance(values, dict) and list(values) == names
                    and all(isinstance(v, int) for v in values.values())):
                return values
        except (OSError, ValueError, cachedir.Rejected):
            pass  # missing or unusable: parse the BTF
    values = offsets_from_btf(BTF.load(VMLINUX_BTF))
    with contextlib.suppress(OSError, cachedir.Rejected):  # not cached: only slower
        cachedir.store(name, key, json.dumps(values).encode())
    return values


def kernel_offsets(path: str | Path = VMLINUX_BTF, use_cache: bool = True) -> dict[str, int]:
    """offsets_from_btf of the BTF at `path`, computed once per process (the running
    kernel's, VMLINUX_BTF, once per kernel: see the module's doc)."""
    key = str(path)
    cached = _cache.get(key) if use_cache else None
    if cached is None:
        if key == VMLINUX_BTF:
            cached = _cached_kernel_offsets(use_cache)
        else:
            cached = offsets_from_btf(BTF.load(path))
        _cache[key] = cached
    return dict(cached)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print("usage: python -m proctrace_bcc.offsets [BTF_FILE]", file=sys.stderr)
        return 2
    path = args[0] if args else VMLINUX_BTF
    try:
        t0 = time.perf_counter()
        btf = BTF.load(path)
        values = offsets_from_btf(btf)
        total = time.perf_counter() - t0
    except ProctraceError as exc:
        print(f"proctrace-bcc: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"# {path}: {btf.type_count} types, loaded in {btf.load_seconds * 1000:.1f} ms, "
        f"{len(values)} values in {total * 1000:.1f} ms"
    )
    where = {d: f"{s}.{choose_path(btf, s, p)}" for d, s, p in REQUIRED}
    where.update({d: f"sizeof({t})" for d, t in SIZES})
    width = max(len(d) for d in values)
    for name, value in values.items():
        print(f"{name:<{width}} {value:>6}  # {where[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
