"""ctypes mirror of bpf_programs/proctrace.h (tests/unit/test_abi.py keeps them in sync)."""

from __future__ import annotations

import ctypes as ct
import enum

PT_FORK = 1
PT_EXEC = 2
PT_EXEC_FAILED = 3
PT_EXIT = 4
PT_SETPGID = 5
PT_SETSID = 6
PT_FDS = 7
PT_SIGNAL = 8

PT_F_TRUNCATED = 0x1
PT_F_ARGS_FAULT = 0x2
PT_F_ARGV0 = 0x4
PT_F_SCRIPT = 0x8
PT_F_FDS_TRUNCATED = 0x10
PT_F_HAS_FDS = 0x20
PT_F_FORK_UNKNOWN = 0x40
PT_F_ENV = 0x80
PT_F_ENV_TRUNCATED = 0x100
PT_F_BY_TRACER = 0x200

# HUP INT QUIT ILL ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM XCPU XFSZ SYS
PT_FATAL_SIGNALS = 0x8300FFDE

PT_FD_NAME = 48
PT_FD_EMPTY = 0xFFFFFFFF
PT_FD_INHERIT_UNKNOWN = 2

PT_ENV_NAMES = 16
PT_ENV_WORDS = 8
PT_ENV_SLOT_BITS = 12
PT_ENV_SLOTS = 4096
PT_ENV_MAX = 4096


class PtStat(enum.IntEnum):
    """Slots of the `stats` array map (enum pt_stat)."""

    TRACED_FULL = 0
    ARGS_FAULT = 1
    ARGV0_FAULT = 2



class PtFork(ct.Structure):
    _fields_ = [("child_pid", ct.c_int32), ("child_pgid", ct.c_int32), ("child_sid", ct.c_int32)]


class PtExec(ct.Structure):
    _fields_ = [
        ("old_tid", ct.c_int32),
        ("argc", ct.c_int32),
        ("args_len", ct.c_uint32),
        ("filename_len", ct.c_uint32),
        ("interp_len", ct.c_uint32),
        ("argv0_len", ct.c_uint32),
        ("env_len", ct.c_uint32),
    ]


class PtExecFailed(ct.Structure):
    _fields_ = [("error", ct.c_int32), ("filename_len", ct.c_uint32)]


class PtExit(ct.Structure):
    _fields_ = [("status", ct.c_int32)]


class PtSetpgid(ct.Structure):
    _fields_ = [("target_pid", ct.c_int32), ("pgid", ct.c_int32)]


class PtSetsid(ct.Structure):
    _fields_ = [("sid", ct.c_int32)]


class PtFds(ct.Structure):
    _fields_ = [("size", ct.c_uint32)]


class PtSignal(ct.Structure):
    _fields_ = [("sig", ct.c_int32), ("code", ct.c_int32), ("sender", ct.c_uint32),
                ("sender_comm", ct.c_char * 16)]


class PtPayload(ct.Union):
    _fields_ = [
        ("fork", PtFork),
        ("exec", PtExec),
        ("exec_failed", PtExecFailed),
        ("exit", PtExit),
        ("setpgid", PtSetpgid),
        ("setsid", PtSetsid),
        ("fds", PtFds),
        ("signal", PtSignal),
    ]


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
        ("u", PtPayload),
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


class PtEnvKey(ct.Structure):
    _fields_ = [("word", ct.c_uint64 * PT_ENV_WORDS)]


class PtEnvConf(ct.Structure):
    _fields_ = [
        ("hmask", ct.c_uint64 * PT_ENV_WORDS),
        ("mult", ct.c_uint64 * PT_ENV_WORDS),
        ("used", ct.c_uint8 * PT_ENV_SLOTS),
    ]


# Every struct, union, enum and #define the header exports, for the ABI test.
STRUCTS: dict[str, type[ct.Structure | ct.Union]] = {
    "pt_fork": PtFork, "pt_exec": PtExec, "pt_exec_failed": PtExecFailed, "pt_exit": PtExit,
    "pt_setpgid": PtSetpgid, "pt_setsid": PtSetsid, "pt_fds": PtFds, "pt_signal": PtSignal,
    "pt_payload": PtPayload,
    "pt_event": PtEvent, "pt_fd": PtFd, "pt_env_key": PtEnvKey, "pt_env_conf": PtEnvConf,
}
ENUMS: dict[str, dict[str, int]] = {
    "pt_stat": {**{f"PT_STAT_{s.name}": int(s) for s in PtStat}, "PT_STAT_COUNT": len(PtStat)},
}
CONSTANTS: dict[str, int] = {
    name: value for name, value in dict(globals()).items()
    if name.startswith("PT_") and isinstance(value, int)
}
