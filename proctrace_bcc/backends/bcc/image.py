"""What BCC produces for a program, kept so that it can be loaded without clang.

An `Image` holds each function's instructions (as BCC would hand them to the
verifier), its program type and tracepoint, the module's license and kernel
version, every map's specification, and which instructions load which map's fd.

`compile_image` gets it from BCC 0.26 without loading anything: a `bcc.BPF`
whose tracepoint autoload is turned off compiles the C and creates the maps;
`BPF.dump_func` (bpf_function_start/size) gives each function's instructions,
in which a map reference is a BPF_LD_IMM64 with src_reg BPF_PSEUDO_MAP_FD and
the map's fd (in this process) as its immediate; bpf_table_fd_id says which
table has that fd, the kernel (bpf_obj_get_info) what the map is.  The
immediates are zeroed in the image (relocations say which map goes there), so
an image does not depend on fd numbers and the same compile gives the same bytes.
loader.py turns an image into live programs.
"""

from __future__ import annotations

import base64
import ctypes as ct
import json
import struct
from typing import Any, NamedTuple

from proctrace_bcc.backends.bcc import libbcc
from proctrace_bcc.errors import RecorderError

FORMAT = 1
INSN = 8  # bytes per BPF instruction
LD_IMM64 = 0x18  # BPF_LD | BPF_DW | BPF_IMM (two instruction slots)
PSEUDO_MAP_FD = 1
PROG_TRACEPOINT = 5  # enum bpf_prog_type
PROG_RAW_TRACEPOINT = 17
# BCC's naming of auto-attached functions -> (program type, how to attach)
PREFIXES = {"tracepoint__": PROG_TRACEPOINT, "raw_tracepoint__": PROG_RAW_TRACEPOINT}


class MapSpec(NamedTuple):  # NamedTuples: cheaper to define than dataclasses (start-up)
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


class ProgSpec(NamedTuple):
    name: str  # BCC's function name, e.g. tracepoint__syscalls__sys_enter_execve
    insns: bytes  # map fd immediates zeroed
    relocs: tuple[tuple[int, int], ...]  # (instruction index, map index)

    @property
    def prog_type(self) -> int:
        return next(t for p, t in PREFIXES.items() if self.name.startswith(p))

    @property
    def tracepoint(self) -> str:
        """"syscalls:sys_enter_execve" (tracepoint) or "sched_process_exit" (raw)."""
        for prefix in PREFIXES:
            if self.name.startswith(prefix):
                return self.name[len(prefix):].replace("__", ":")
        raise AssertionError(self.name)


class Image(NamedTuple):
    license: str
    kern_version: int
    maps: tuple[MapSpec, ...]
    progs: tuple[ProgSpec, ...]

    def map_index(self, name: str) -> int:
        return next(i for i, m in enumerate(self.maps) if m.name == name)

    def to_bytes(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "license": self.license, "kern_version": self.kern_version,
            "maps": [m._asdict() for m in self.maps],
            "progs": [{"name": p.name, "insns": base64.b64encode(p.insns).decode(),
                       "relocs": [list(r) for r in p.relocs]} for p in self.progs],
        }, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Image:
        """The image in `data`; ValueError (KeyError, TypeError) if it is not a valid one."""
        d: dict[str, Any] = json.loads(data)
        if d["format"] != FORMAT:
            raise ValueError(f"image format {d['format']}, expected {FORMAT}")
        maps = tuple(MapSpec(**m) for m in d["maps"])
        progs = []
        for p in d["progs"]:
            insns = base64.b64decode(p["insns"], validate=True)
            relocs = tuple((int(i), int(m)) for i, m in p["relocs"])
            if not p["name"].startswith(tuple(PREFIXES)) or len(insns) % INSN or any(
                    not 0 <= i < len(insns) // INSN or not 0 <= m < len(maps)
                    for i, m in relocs):
                raise ValueError(f"bad program {p['name']!r}")
            progs.append(ProgSpec(p["name"], insns, relocs))
        return cls(str(d["license"]), int(d["kern_version"]), maps, tuple(progs))


def relocate(insns: bytes, fd_to_map: dict[int, int]) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """`insns` with every map fd immediate zeroed, and the (instruction, map) pairs."""
    out = bytearray(insns)
    relocs: list[tuple[int, int]] = []
    i = 0
    n = len(insns) // INSN
    while i < n:
        code, regs, _, imm = struct.unpack_from("<BBhi", insns, i * INSN)
        if code == LD_IMM64:
            src = regs >> 4
            if src == PSEUDO_MAP_FD:
                if imm not in fd_to_map:
                    raise RecorderError(f"instruction {i} refers to fd {imm}, no map of BCC's")
                relocs.append((i, fd_to_map[imm]))
                struct.pack_into("<i", out, i * INSN + 4, 0)
            elif src != 0:
                raise RecorderError(f"instruction {i}: LD_IMM64 kind {src} is not supported")
            i += 2
        else:
            i += 1
    return bytes(out), tuple(relocs)


def compile_image(text: str, cflags: list[str]) -> Image:
    """Compile with BCC (clang; no load, no attach) and extract the image."""
    import bcc

    class CompileOnly(bcc.BPF):  # type: ignore[misc]  # bcc has no types
        def _trace_autoload(self) -> None:
            pass  # loader.py loads and attaches

    mod = ct.CDLL("libbcc.so.0")  # what `import bcc` loaded; its table enumeration
    mod.bpf_num_tables.restype = ct.c_size_t
    mod.bpf_num_tables.argtypes = [ct.c_void_p]
    mod.bpf_table_name.restype = ct.c_char_p
    mod.bpf_table_name.argtypes = [ct.c_void_p, ct.c_size_t]
    mod.bpf_table_fd_id.restype = ct.c_int
    mod.bpf_table_fd_id.argtypes = [ct.c_void_p, ct.c_size_t]
    try:
        b = CompileOnly(text=text, cflags=cflags)
    except Exception as exc:  # BCC raises bare Exception on compile errors
        raise RecorderError(f"BCC could not compile the BPF program: {exc}") from None
    try:
        maps: list[MapSpec] = []
        fd_to_map: dict[int, int] = {}
        for i in range(mod.bpf_num_tables(b.module)):
            fd = mod.bpf_table_fd_id(b.module, i)
            info = libbcc.map_info(fd)
            fd_to_map[fd] = len(maps)
            maps.append(MapSpec(mod.bpf_table_name(b.module, i).decode(), info.type,
                                info.key_size, info.value_size, info.max_entries,
                                info.map_flags))
        progs: list[ProgSpec] = []
        for i in range(bcc.lib.bpf_num_functions(b.module)):
            name = bcc.lib.bpf_function_name(b.module, i).decode()
            if not name.startswith(tuple(PREFIXES)):
                raise RecorderError(f"function {name}: not a tracepoint program")
            insns, relocs = relocate(b.dump_func(name), fd_to_map)
            progs.append(ProgSpec(name, insns, relocs))
        return Image(bcc.lib.bpf_module_license(b.module).decode(),
                     int(bcc.lib.bpf_module_kern_version(b.module)), tuple(maps), tuple(progs))
    finally:
        b.cleanup()
