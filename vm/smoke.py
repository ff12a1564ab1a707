#!/usr/bin/python3
"""Smoke test of a kernel for the VM matrix: BCC and bpftrace both see an exec.

1. BCC: compiles a small program on tracepoint sched:sched_process_exec that
   includes <linux/sched.h> and reads task->tgid and task->real_parent->tgid
   through the header's struct layout, runs /bin/true, and checks that the
   event for that pid arrives with filename /bin/true, the same tgid, and our
   pid as parent (so the header tree BCC found matches the running kernel).
2. bpftrace: runs
       bpftrace -e 'tracepoint:sched:sched_process_exec { printf("x\\n"); exit(); }'
   and execs /bin/true repeatedly until it prints x and exits ("Attaching N
   probes" comes slightly before the probe is live, so one exec is not enough).

Needs root.  Exit status 0 when both pass; one line per step on stdout.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import subprocess
import sys
import time

BPF_TEXT = r"""
#include <linux/sched.h>

struct event {
    u32 pid;
    u32 task_tgid;
    u32 parent_tgid;
    char comm[16];
    char filename[64];
};

BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(sched, sched_process_exec) {
    struct event e = {};
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    e.pid = bpf_get_current_pid_tgid() >> 32;
    struct task_struct *parent = NULL;
    bpf_probe_read_kernel(&e.task_tgid, sizeof(e.task_tgid), &t->tgid);
    bpf_probe_read_kernel(&parent, sizeof(parent), &t->real_parent);
    bpf_probe_read_kernel(&e.parent_tgid, sizeof(e.parent_tgid), &parent->tgid);
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    unsigned short off = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(&e.filename, sizeof(e.filename), (char *)args + off);
    events.perf_submit(args, &e, sizeof(e));
    return 0;
}
"""

TARGET = "/bin/true"
BPFTRACE_PROG = 'tracepoint:sched:sched_process_exec { printf("x\\n"); exit(); }'


class Event(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("task_tgid", ctypes.c_uint32),
        ("parent_tgid", ctypes.c_uint32),
        ("comm", ctypes.c_ubyte * 16),
        ("filename", ctypes.c_ubyte * 64),
    ]


def cstr(buf: ctypes.Array[ctypes.c_ubyte]) -> str:
    raw = bytes(buf)
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def check_bcc() -> str | None:
    """None when the BCC step passes, else why not."""
    try:
        from bcc import BPF
    except ImportError as exc:
        return f"cannot import bcc: {exc}"
    t0 = time.monotonic()
    b = BPF(text=BPF_TEXT)
    compiled = time.monotonic() - t0
    seen: list[Event] = []

    def on_event(_cpu: int, data: int, _size: int) -> None:
        seen.append(Event.from_buffer_copy(ctypes.string_at(data, ctypes.sizeof(Event))))

    b["events"].open_perf_buffer(on_event)
    child = subprocess.Popen([TARGET])
    child.wait()
    deadline = time.monotonic() + 10
    mine: list[Event] = []
    while time.monotonic() < deadline and not mine:
        b.perf_buffer_poll(timeout=200)
        mine = [e for e in seen if e.pid == child.pid]
    b.cleanup()
    if not mine:
        return f"no sched_process_exec event for pid {child.pid} ({len(seen)} others) in 10 s"
    e = mine[0]
    problems = []
    if cstr(e.filename) != TARGET:
        problems.append(f"filename {cstr(e.filename)!r} != {TARGET!r}")
    if e.task_tgid != child.pid:
        problems.append(f"task->tgid {e.task_tgid} != {child.pid} (header layout mismatch?)")
    if e.parent_tgid != os.getpid():
        problems.append(f"task->real_parent->tgid {e.parent_tgid} != {os.getpid()} "
                        "(header layout mismatch?)")
    if problems:
        return "; ".join(problems)
    print(f"smoke: bcc ok: exec of {TARGET} seen as pid {e.pid} comm {cstr(e.comm)!r}, "
          f"tgid and parent read through headers match (compile {compiled:.1f} s)", flush=True)
    return None


def check_bpftrace() -> str | None:
    exe = shutil.which("bpftrace")
    if exe is None:
        return "bpftrace not found on PATH"
    t0 = time.monotonic()
    proc = subprocess.Popen([exe, "-e", BPFTRACE_PROG], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    attached_at: float | None = None
    execs = 0
    deadline = t0 + 60
    while time.monotonic() < deadline:
        for _key, _ in sel.select(timeout=0.2):
            chunk = proc.stdout.read() or b""
            out += chunk
        if attached_at is None and b"Attaching" in out:
            attached_at = time.monotonic()
        if attached_at is not None and proc.poll() is None:
            subprocess.run([TARGET], check=True)
            execs += 1
        if proc.poll() is not None:
            out += proc.stdout.read() or b""
            break
    else:
        proc.kill()
        proc.wait()
        return f"bpftrace did not exit within 60 s; output: {out[-300:]!r}"
    lines = out.decode(errors="replace").splitlines()
    if proc.returncode != 0 or "x" not in lines:
        return f"bpftrace exit {proc.returncode}, output: {out[-300:]!r}"
    live = (time.monotonic() - attached_at) if attached_at is not None else float("nan")
    print(f"smoke: bpftrace ok: printed x and exited after {execs} exec(s), "
          f"{time.monotonic() - t0:.1f} s in all ({live:.1f} s after 'Attaching')", flush=True)
    return None


def main() -> int:
    if os.geteuid() != 0:
        print("smoke: needs root", file=sys.stderr)
        return 2
    print(f"smoke: kernel {os.uname().release}", flush=True)
    failed = 0
    for name, step in (("bcc", check_bcc), ("bpftrace", check_bpftrace)):
        try:
            why = step()
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why is not None:
            print(f"smoke: {name} FAILED: {why}", flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
