"""ctypes mirror of bpf_programs/proctrace.h (tests/unit/test_abi.py keeps them in sync)."""

from __future__ import annotations

import ctypes as ct

PT_FORK = 1
PT_EXEC = 2
PT_EXEC_FAILED = 3
PT_EXIT = 4
PT_SETPGID = 5
PT_SETSID = 6
PT_FDS = 7

PT_F_TRUNCATED = 0x1
PT_F_ARGS_FAULT = 0x2
PT_F_ARGV0 = 0x4
PT_F_SCRIPT = 0x8
PT_F_FDS_TRUNCATED = 0x10
PT_F_HAS_FDS = 0x20
PT_F_FORK_UNKNOWN = 0x40

PT_FD_NAME = 48
PT_FD_EMPTY = 0xFFFFFFFF
PT_FD_INHERIT_UNKNOWN = 2


class PtEvent(ct.Structure):
    _fields_ = [
        ("ts", ct.c_uint64),
        ("type", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("pid", ct.c_uint32),
        ("tid", ct.c_uint32),
        ("ppid", ct.c_uint32),
        ("pgid", ct.c_uint32),
        ("sid", ct.c_uint32),
        ("uid", ct.c_uint32),
        ("arg0", ct.c_int32),
        ("arg1", ct.c_int32),
        ("arg2", ct.c_int32),
        ("len0", ct.c_uint32),
        ("len1", ct.c_uint32),
        ("len2", ct.c_uint32),
        ("len3", ct.c_uint32),
        ("cpu", ct.c_uint32),
    ]


class PtFd(ct.Structure):
    _fields_ = [
        ("fd", ct.c_uint32),
        ("mode", ct.c_uint32),
        ("ino", ct.c_uint64),
        ("dev", ct.c_uint32),
        ("rdev", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("inherited", ct.c_uint32),
        ("name", ct.c_ubyte * PT_FD_NAME),
    ]


# Every struct and #define the header exports, for the ABI test.
STRUCTS: dict[str, type[ct.Structure]] = {"pt_event": PtEvent, "pt_fd": PtFd}
CONSTANTS: dict[str, int] = {
    name: value for name, value in dict(globals()).items()
    if name.startswith("PT_") and isinstance(value, int)
}
