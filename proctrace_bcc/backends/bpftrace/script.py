"""bpf_programs/proctrace.bt rendered for one bpftrace version and kernel, and the
environment bpftrace runs it with.

The template's rendering:

- `NR($var)` expands to the number of the struct pid *$var as the recorder's
  pid namespace sees it (0: invisible from there; in the initial namespace
  simply its first number);
- `UPIDS($var)` to a struct upid * to the first of its numbers (the flexible
  array is cast in 0.17, reached through offsetof() from 0.18);
- `//@if PREPARE` .. `//@endif` is kept when the kernel has the
  sched_prepare_exec tracepoint (6.10+), `//@if !PREPARE` .. `//@endif`
  otherwise;
- `args->` becomes `args.` for bpftrace 0.19+;
- for 0.22 and 0.23 (which misread __data_loc strings) the exec tracepoints'
  probes become raw tracepoints reading struct linux_binprm.

User text never goes into the script: numbers travel as positional parameters
($1 .. $4, see BpftraceBackend.params and the template's header).
"""

from __future__ import annotations

import re
from pathlib import Path

from proctrace_bcc.backends.bpftrace.probe import Version
from proctrace_bcc.backends.bpftrace.protocol import CHUNK
from proctrace_bcc.errors import RecorderError
from proctrace_bcc.programs import program_path

ARGS_DOT_VERSION = (0, 19, 0)  # `args` became a struct: `args.x` (args->x still accepted)
OFFSETOF_VERSION = (0, 18, 0)  # offsetof(): reaches struct pid's flexible `numbers` array
MAX_STRLEN_ENV_VERSION = (0, 20, 0)  # BPFTRACE_STRLEN -> BPFTRACE_MAX_STRLEN
# From 0.22 buf() has no length limit: its result (a 4-byte length, then the bytes) is
# built in a scratch buffer of BPFTRACE_MAX_STRLEN bytes, so buf(x, CHUNK) needs
# CHUNK + 4 (0.23.2 with 200: "invalid access to map value, value_size=800 off=800").
BUF_SCRATCH_VERSION = (0, 22, 0)
# 0.22 and 0.23 read a tracepoint's __data_loc string at the wrong address (empty or
# garbage; bpftrace PR #4238, fixed in 0.24.0): their exec probes are rendered as raw
# tracepoints that read the same strings from the kernel's struct linux_binprm.
DATA_LOC_BUG = ((0, 22, 0), (0, 24, 0))
MAP_KEYS = 65536


def script_path() -> Path:
    """proctrace.bt: the one place that says which file the template is."""
    return program_path("proctrace.bt")


_NR = re.compile(r"NR\((\$\w+)\)")
_UPIDS = re.compile(r"UPIDS\((\$\w+)\)")


def upids(var: str, version: Version) -> str:
    """`struct upid *` to the first of `var`'s numbers (a `struct pid *` variable).

    `numbers` is a flexible array (`struct upid[0]` in BTF): 0.17 casts it to a
    pointer, 0.23 refuses that cast ("Cannot cast from struct upid[0]"), so from
    0.18 (offsetof()) the address is computed from the struct's own address.
    """
    if version >= OFFSETOF_VERSION:
        return f"((struct upid *)((uint64){var} + offsetof(struct pid, numbers)))"
    return f"((struct upid *){var}->numbers)"


def _nr(var: str, version: Version) -> str:
    """One ternary, no `$lv == 0 ?` shortcut around it: 0.23 segfaults compiling a
    ternary nested in another whose inner one reads kernel memory.  At level 0 the
    check holds for every pid (@inum is then the initial namespace's).  The
    pid_namespace cast is redundant in C; 0.23 needs it to resolve `ns` in a struct
    reached through a cast ("struct pid_namespace does not contain a field named ns")."""
    up = f"({upids(var, version)} + $lv)"
    return (f"(({var}->level >= $lv && ((struct pid_namespace *){up}->ns)->ns.inum == @inum)"
            f" ? {up}->nr : 0)")


def _nr_init(var: str, version: Version) -> str:
    return f"{upids(var, version)}->nr"


BPRM = "((struct linux_binprm *)arg{})"
# tracepoint -> (raw tracepoint, what its `args.` fields become); the raw tracepoints'
# arguments are those of trace_sched_process_exec(p, old_pid, bprm) and
# trace_sched_prepare_exec(task, bprm), the strings those of the tracepoints' fields.
RAW_EXEC_PROBES = {
    "tracepoint:sched:sched_process_exec": ("rawtracepoint:sched_process_exec", {
        "args.old_pid": "arg1", "args.filename": BPRM.format(2) + "->filename"}),
    "tracepoint:sched:sched_prepare_exec": ("rawtracepoint:sched_prepare_exec", {
        "args.interp": BPRM.format(1) + "->interp",
        "args.filename": BPRM.format(1) + "->filename"}),
}


def raw_exec_probes(text: str) -> str:
    """The exec tracepoints' probes as raw tracepoints (for DATA_LOC_BUG versions).

    Probes on one event still run in the order they are written (all of them raw).
    """
    out = []
    subs: dict[str, str] | None = None
    for line in text.splitlines():
        if line[:1].isalpha():  # a probe's attach point (a probe's body is indented)
            raw = RAW_EXEC_PROBES.get(line.strip())
            if raw is None and line.rstrip(",").strip() in RAW_EXEC_PROBES:
                raise RecorderError(f"proctrace.bt: {line.strip()} shares its probe")
            subs = raw[1] if raw else None
            if raw:
                line = raw[0]
        elif subs:
            for field_, expr in subs.items():
                line = line.replace(field_, expr)
            if "args." in line:
                raise RecorderError(f"proctrace.bt: no raw tracepoint argument for {line!r}")
        out.append(line)
    return "\n".join(out) + "\n"


def render_script(template: str, version: Version, prepare_exec: bool,
                  init_pidns: bool = False) -> str:
    """The script for this bpftrace and kernel (see the module docstring).

    `init_pidns`: the recorder is in the initial pid namespace, so pid numbers
    need no translation (a smaller program, faster to compile and to run).
    """
    out: list[str] = ["// rendered from bpf_programs/proctrace.bt by backends/bpftrace/script.py"]
    keep = [True]
    lines = template.splitlines()
    start = 0
    if template.lstrip().startswith("/*"):  # the template's documentation stays there
        start = next(i for i, ln in enumerate(lines) if "*/" in ln) + 1
    for lineno, line in enumerate(lines[start:], start + 1):
        s = line.strip()
        if s.startswith("//@if "):
            cond = s[len("//@if "):].strip()
            if cond not in ("PREPARE", "!PREPARE"):
                raise RecorderError(f"proctrace.bt:{lineno}: unknown condition {cond!r}")
            keep.append(keep[-1] and (prepare_exec if cond == "PREPARE" else not prepare_exec))
            continue
        if s == "//@endif":
            if len(keep) == 1:
                raise RecorderError(f"proctrace.bt:{lineno}: //@endif without //@if")
            keep.pop()
            continue
        if keep[-1]:
            out.append(line)
    if len(keep) != 1:
        raise RecorderError("proctrace.bt: //@if without //@endif")
    nr = _nr_init if init_pidns else _nr
    text = _NR.sub(lambda m: nr(m.group(1), version), "\n".join(out) + "\n")
    text = _UPIDS.sub(lambda m: upids(m.group(1), version), text)
    if version >= ARGS_DOT_VERSION:
        text = text.replace("args->", "args.")
    if DATA_LOC_BUG[0] <= version < DATA_LOC_BUG[1]:
        text = raw_exec_probes(text)
    return text


def script_env(version: Version, buffer_pages: int) -> dict[str, str]:
    """bpftrace settings through its environment (names changed in 0.20).

    The string length is CHUNK, or from 0.22 CHUNK + 8 so that buf(x, CHUNK) fits
    its scratch buffer; str() then keeps up to CHUNK + 7 bytes, of which the
    script prints CHUNK as before (what c_string expects).
    """
    new = version >= MAX_STRLEN_ENV_VERSION
    strlen = CHUNK + 8 if version >= BUF_SCRATCH_VERSION else CHUNK
    pages = max(8, buffer_pages)
    pages = 1 << (pages.bit_length() - 1)  # perf buffers need a power of two
    return {
        ("BPFTRACE_MAX_STRLEN" if new else "BPFTRACE_STRLEN"): str(strlen),
        ("BPFTRACE_MAX_MAP_KEYS" if new else "BPFTRACE_MAP_KEYS_MAX"): str(MAP_KEYS),
        "BPFTRACE_PERF_RB_PAGES": str(pages),
    }


def argv_chunks(argv_bytes: int) -> int:
    """Argument-area chunks kept per exec for BackendConfig.argv_bytes()."""
    return argv_bytes // CHUNK
