#!/usr/bin/python3
"""Prove that BTF-derived struct offsets equal the kernel headers' ones.

Meant for a VM-matrix guest whose /lib/modules/$(uname -r)/build holds the
headers the running kernel was built from (vm/matrix.py sets that up; on
Debian 6.1 the headers package matches the image exactly).

For every (define, struct, member) of proctrace_bcc.offsets.REQUIRED and every
(define, type) of SIZES, BCC compiles a BPF program whose code stores
offsetof(struct X, member) / sizeof(type), as the compiler sees them in the
headers, into an array map.  The program runs on the syscall tracepoint
sys_enter_getppid, filtered to this process, which then calls getppid().
The values read back are compared with offsets_from_btf(BTF.load()) of the
running kernel.  Exit status 0 when all are equal; one line per mismatch.

Run with the project's venv as root: .venv/bin/python vm/check_offsets.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proctrace_bcc.btf import BTF
from proctrace_bcc.offsets import REQUIRED, SIZES, choose_path, offsets_from_btf

INCLUDES = """
#include <linux/stddef.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/ns_common.h>
#include <linux/mm_types.h>
#include <linux/binfmts.h>
#include <linux/fdtable.h>
#include <linux/fs.h>
#include <linux/path.h>
#include <linux/dcache.h>
"""


def expressions(btf: BTF) -> list[tuple[str, str]]:
    """(define, C expression) for every REQUIRED and SIZES entry, in that order."""
    exprs = []
    for define, struct, spec in REQUIRED:
        path = choose_path(btf, struct, spec)  # the alternative this kernel has
        exprs.append((define, f"offsetof(struct {struct}, {path})"))
    for define, ctype in SIZES:
        exprs.append((define, f"sizeof({ctype})"))
    return exprs


def program(exprs: list[tuple[str, str]], tgid: int) -> str:
    body = "\n".join(
        f"    k = {i}; v = {expr}; values.update(&k, &v);  /* {define} */"
        for i, (define, expr) in enumerate(exprs)
    )
    return f"""{INCLUDES}
BPF_ARRAY(values, u64, {len(exprs)});
BPF_ARRAY(hits, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {{
    if ((bpf_get_current_pid_tgid() >> 32) != {tgid})
        return 0;
    u32 k;
    u64 v;
{body}
    k = 0;
    hits.increment(k);
    return 0;
}}
"""


def main() -> int:
    if os.geteuid() != 0:
        print("check_offsets: needs root", file=sys.stderr)
        return 2
    from bcc import BPF

    release = os.uname().release
    build = Path("/lib/modules") / release / "build"
    btf = BTF.load()
    from_btf = offsets_from_btf(btf)
    exprs = expressions(btf)
    t0 = time.monotonic()
    b = BPF(text=program(exprs, os.getpid()))
    compiled = time.monotonic() - t0
    os.getppid()
    hits = b["hits"][0].value
    table = b["values"]
    from_headers = {define: int(table[i].value) for i, (define, _) in enumerate(exprs)}
    b.cleanup()
    if hits < 1:
        print("check_offsets: FAILED: the sys_enter_getppid program never ran")
        return 1
    bad = 0
    for define, expr in exprs:
        h, t = from_headers[define], from_btf[define]
        if h != t:
            bad += 1
            print(f"check_offsets: MISMATCH {define}: headers {expr} = {h}, BTF = {t}")
    src = os.path.realpath(os.environ.get("BCC_KERNEL_SOURCE") or build)
    if bad:
        print(f"check_offsets: FAILED: {bad} of {len(exprs)} values differ on {release} "
              f"(headers {src})")
        return 1
    print(f"check_offsets: ok: {len(exprs)} offsets and sizes from the headers in {src} "
          f"equal those from BTF on {release} (compile {compiled:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
