"""ctypes bindings of the part of libbcc that loads and runs compiled programs.

libbcc_bpf.so.0 (BCC's libbpf layer, installed with libbcc) exports everything a
compiled program needs: map creation, program load, tracepoint attach, perf
readers, map lookups.  It links no LLVM, so it loads in ~10 ms where libbcc.so.0
(and `import bcc`) takes ~100 ms: the warm start (loader.py) uses only this.
Signatures are BCC 0.26's (src/cc/libbpf.h, src/cc/perf_reader.h).
"""

from __future__ import annotations

import ctypes as ct
from functools import cache

from proctrace_bcc.errors import BackendUnavailable

LIBRARY = "libbcc_bpf.so.0"

RAW_CB = ct.CFUNCTYPE(None, ct.py_object, ct.c_void_p, ct.c_int)
LOST_CB = ct.CFUNCTYPE(None, ct.py_object, ct.c_ulonglong)


class PerfBufferOpts(ct.Structure):
    _fields_ = [("pid", ct.c_int), ("cpu", ct.c_int), ("wakeup_events", ct.c_int)]


class MapInfo(ct.Structure):
    """The head of struct bpf_map_info (include/uapi/linux/bpf.h)."""

    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("key_size", ct.c_uint32),
                ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32),
                ("map_flags", ct.c_uint32), ("name", ct.c_char * 16)]


class ProgInfo(ct.Structure):
    """The head of struct bpf_prog_info."""

    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("tag", ct.c_uint8 * 8)]


_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "bcc_create_map": (ct.c_int, [ct.c_int, ct.c_char_p, ct.c_int, ct.c_int, ct.c_int,
                                  ct.c_int]),
    "bcc_prog_load": (ct.c_int, [ct.c_int, ct.c_char_p, ct.c_void_p, ct.c_int, ct.c_char_p,
                                 ct.c_uint, ct.c_int, ct.c_char_p, ct.c_uint]),
    "bpf_attach_tracepoint": (ct.c_int, [ct.c_int, ct.c_char_p, ct.c_char_p]),
    "bpf_attach_raw_tracepoint": (ct.c_int, [ct.c_int, ct.c_char_p]),
    "bpf_open_perf_buffer_opts": (ct.c_void_p, [RAW_CB, LOST_CB, ct.py_object, ct.c_int,
                                                ct.POINTER(PerfBufferOpts)]),
    "perf_reader_fd": (ct.c_int, [ct.c_void_p]),
    "perf_reader_free": (None, [ct.c_void_p]),
    "perf_reader_poll": (ct.c_int, [ct.c_int, ct.POINTER(ct.c_void_p), ct.c_int]),
    "perf_reader_consume": (ct.c_int, [ct.c_int, ct.POINTER(ct.c_void_p)]),
    "bpf_update_elem": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_ulonglong]),
    "bpf_lookup_elem": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p]),
    "bpf_get_next_key": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p]),
    "bpf_obj_get_info": (ct.c_int, [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32)]),
}


@cache
def lib() -> ct.CDLL:
    """libbcc_bpf with the signatures above; BackendUnavailable if it is not installed."""
    try:
        so = ct.CDLL(LIBRARY, use_errno=True)
    except OSError:
        raise BackendUnavailable(
            "bcc", f"{LIBRARY} not found (Debian: apt-get install libbpfcc)") from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(so, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return so


def map_info(fd: int) -> MapInfo:
    """What the kernel says of the map `fd` (OSError on failure)."""
    info = MapInfo()
    n = ct.c_uint32(ct.sizeof(info))
    if lib().bpf_obj_get_info(fd, ct.byref(info), ct.byref(n)) != 0:
        raise OSError(ct.get_errno(), f"bpf_obj_get_info(map fd {fd}) failed")
    return info


def prog_id(fd: int) -> int:
    """The kernel's id of the program `fd` (what `bpftool prog show id N` shows)."""
    info = ProgInfo()
    n = ct.c_uint32(ct.sizeof(info))
    if lib().bpf_obj_get_info(fd, ct.byref(info), ct.byref(n)) != 0:
        raise OSError(ct.get_errno(), f"bpf_obj_get_info(prog fd {fd}) failed")
    return int(info.id)
