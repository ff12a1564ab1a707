"""A small, fast reader of BTF (BPF Type Format), e.g. ``/sys/kernel/btf/vmlinux``.

The BPF programs must read kernel structs with the layout of the *running*
kernel; the header trees on disk often belong to another kernel.  This module
answers the only questions the recorder asks of the kernel's own type
information: "at which byte offset is ``task_struct.real_parent``?" and "how
big is ``struct upid``?".

Format: the kernel's ``Documentation/bpf/btf.rst``.  A blob is a header, a type
section (records of 3 little-endian u32 words -- name offset, info, size/type
-- each followed by kind-specific data) and a string section.  Type ids are
implicit: the n-th record is id n (id 0 is ``void``).

Loading does one pass over the type section that records where each record
starts (records have variable length, so that pass cannot be skipped); names
are indexed on the first lookup; members are read only when asked for.  Only
little-endian BTF (x86_64, arm64, ...) is supported.  Split BTF (kernel
modules' files, whose ids continue the vmlinux ids) is not.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from proctrace_bcc.errors import RecorderError

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F
_MAGIC_LE = b"\x9f\xeb"
_MAGIC_BE = b"\xeb\x9f"
_HEADER_LEN = 24

# Kinds (include/uapi/linux/btf.h).
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

KIND_NAMES = {
    KIND_INT: "int",
    KIND_PTR: "ptr",
    KIND_ARRAY: "array",
    KIND_STRUCT: "struct",
    KIND_UNION: "union",
    KIND_ENUM: "enum",
    KIND_FWD: "fwd",
    KIND_TYPEDEF: "typedef",
    KIND_VOLATILE: "volatile",
    KIND_CONST: "const",
    KIND_RESTRICT: "restrict",
    KIND_FUNC: "func",
    KIND_FUNC_PROTO: "func_proto",
    KIND_VAR: "var",
    KIND_DATASEC: "datasec",
    KIND_FLOAT: "float",
    KIND_DECL_TAG: "decl_tag",
    KIND_TYPE_TAG: "type_tag",
    KIND_ENUM64: "enum64",
}

# Words (u32) following the 3-word common record: a fixed part plus a part per
# vlen item.  -1 marks a kind this reader does not know (its length is unknown,
# so the rest of the section could not be walked).
_FIXED_WORDS = [-1] * 32
_VLEN_WORDS = [0] * 32
for _kind, _fixed, _per in (
    (KIND_INT, 1, 0),  # u32 encoding | bits_offset | nr_bits
    (KIND_PTR, 0, 0),
    (KIND_ARRAY, 3, 0),  # struct btf_array {type, index_type, nelems}
    (KIND_STRUCT, 0, 3),  # struct btf_member {name_off, type, offset}
    (KIND_UNION, 0, 3),
    (KIND_ENUM, 0, 2),  # struct btf_enum {name_off, val}
    (KIND_FWD, 0, 0),
    (KIND_TYPEDEF, 0, 0),
    (KIND_VOLATILE, 0, 0),
    (KIND_CONST, 0, 0),
    (KIND_RESTRICT, 0, 0),
    (KIND_FUNC, 0, 0),
    (KIND_FUNC_PROTO, 0, 2),  # struct btf_param {name_off, type}
    (KIND_VAR, 1, 0),  # struct btf_var {linkage}
    (KIND_DATASEC, 0, 3),  # struct btf_var_secinfo {type, offset, size}
    (KIND_FLOAT, 0, 0),
    (KIND_DECL_TAG, 1, 0),  # struct btf_decl_tag {component_idx}
    (KIND_TYPE_TAG, 0, 0),
    (KIND_ENUM64, 0, 3),  # struct btf_enum64 {name_off, val_lo32, val_hi32}
):
    _FIXED_WORDS[_kind] = _fixed
    _VLEN_WORDS[_kind] = _per

# Kinds that only qualify another type (followed when resolving).
_MODIFIERS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
_RECORDS = frozenset({KIND_STRUCT, KIND_UNION})
# Kinds findable by name, in order of preference for a bare name.
_BY_NAME_ORDER = (
    KIND_STRUCT,
    KIND_UNION,
    KIND_TYPEDEF,
    KIND_INT,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FLOAT,
)
_NAMED_KINDS = frozenset((*_BY_NAME_ORDER, KIND_FWD))
_MAX_CHAIN = 64  # longest modifier chain followed before declaring a loop

_COMPONENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)\Z")
_INDEX = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Member:
    """A resolved member: where it is and what it is."""

    bit_offset: int  # from the start of the outermost struct
    type_id: int  # as declared (typedefs/qualifiers not followed)
    bitfield_size: int  # 0 unless the member is a bitfield

    @property
    def is_bitfield(self) -> bool:
        return self.bitfield_size != 0 or self.bit_offset % 8 != 0


def _u32_array(data: bytes) -> array[int]:
    code = "I" if array("I").itemsize == 4 else "L"
    words = array(code)
    words.frombytes(data)
    if sys.byteorder != "little":
        words.byteswap()
    return words


IDENTITY_SPAN = 65536  # bytes hashed at each end of the file for identity()


def identity(path: str | Path = VMLINUX_BTF) -> str:
    """What tells this kernel's BTF from another's without parsing it: the kernel's
    release and build version, the file's size and a SHA-256 of its first and last
    IDENTITY_SPAN bytes (the header and the type section's start, the strings' end).
    Stable across reboots of the same kernel; a few hundred microseconds.
    RecorderError when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha256(f.read(IDENTITY_SPAN))
            if size > IDENTITY_SPAN:
                h.update(os.pread(f.fileno(), IDENTITY_SPAN, max(IDENTITY_SPAN,
                                                                 size - IDENTITY_SPAN)))
    except OSError as exc:
        raise RecorderError(f"BTF {path}: cannot read: {exc.strerror or exc}") from None
    u = platform.uname()
    return f"{u.release} {u.version} {size} {h.hexdigest()}"


class BTF:
    """Type information from one BTF blob; see the module docstring."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        t0 = time.perf_counter()
        self.source = source
        if len(data) < _HEADER_LEN:
            self._fail(f"too short for a BTF header ({len(data)} bytes)")
        magic = data[:2]
        if magic == _MAGIC_BE:
            self._fail(
                "big-endian BTF is not supported (only little-endian kernels: x86_64, arm64)"
            )
        if magic != _MAGIC_LE:
            self._fail(f"not BTF (magic {magic.hex()}, expected 9feb)")
        version = data[2]
        if version != 1:
            self._fail(f"unsupported BTF version {version} (expected 1)")
        hdr = _u32_array(data[4:_HEADER_LEN])
        hdr_len, type_off, type_len, str_off, str_len = hdr
        if hdr_len < _HEADER_LEN or hdr_len > len(data):
            self._fail(f"bad header length {hdr_len}")
        body = len(data) - hdr_len
        if type_off + type_len > body or str_off + str_len > body:
            self._fail(
                f"sections out of bounds (types {type_off}+{type_len}, "
                f"strings {str_off}+{str_len}, {body} bytes after the header)"
            )
        if type_len % 4 or (hdr_len + type_off) % 4:
            self._fail("type section is not 4-byte aligned")
        if str_len == 0 or data[hdr_len + str_off] != 0:
            self._fail("string section does not start with an empty string")
        self._strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
        words = _u32_array(data[hdr_len + type_off : hdr_len + type_off + type_len])
        self._words = words
        self._starts = self._scan(words)
        self._names: dict[str, list[int]] | None = None
        self._ptr_size: int | None = None
        self.load_seconds = time.perf_counter() - t0

    # -- construction ---------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path = VMLINUX_BTF) -> BTF:
        """Read and index a BTF file; RecorderError with one line on failure."""
        t0 = time.perf_counter()
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise RecorderError(
                f"BTF {path}: not found (kernel built without CONFIG_DEBUG_INFO_BTF?)"
            ) from None
        except OSError as exc:
            raise RecorderError(f"BTF {path}: cannot read: {exc.strerror or exc}") from None
        btf = cls(data, str(path))
        btf.load_seconds = time.perf_counter() - t0  # including the read
        return btf

    def _fail(self, reason: str) -> NoReturn:
        raise RecorderError(f"BTF {self.source}: {reason}")

    def _scan(self, words: array[int]) -> array[int]:
        """Word index of the record of every type id (index 0: void, unused)."""
        starts = array("I" if array("I").itemsize == 4 else "L", [0])
        append = starts.append
        fixed = _FIXED_WORDS
        per = _VLEN_WORDS
        i = 0
        n = len(words)
        while i < n:
            append(i)
            if i + 3 > n:
                break
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            extra = fixed[kind]
            if extra < 0:
                self._fail(f"type id {len(starts) - 1} has unknown kind {kind}")
            i += 3 + extra + per[kind] * (info & 0xFFFF)
        if i != n:
            self._fail("type section ends inside a type record (truncated?)")
        return starts

    # -- raw accessors --------------------------------------------------------

    @property
    def type_count(self) -> int:
        """Number of types, void excluded."""
        return len(self._starts) - 1

    def _rec(self, tid: int) -> int:
        if tid <= 0 or tid >= len(self._starts):
            self._fail(f"reference to type id {tid} (only {self.type_count} types)")
        return self._starts[tid]

    def kind(self, tid: int) -> int:
        if tid == 0:
            return 0
        return (self._words[self._rec(tid) + 1] >> 24) & 0x1F

    def name(self, tid: int) -> str:
        if tid == 0:
            return "void"
        return self._str(self._words[self._rec(tid)])

    def _str(self, off: int) -> str:
        s = self._strings
        if off >= len(s):
            self._fail(f"string offset {off} out of bounds")
        end = s.find(b"\0", off)
        if end < 0:
            end = len(s)
        return s[off:end].decode("utf-8", "surrogateescape")

    def _describe(self, tid: int) -> str:
        kind = self.kind(tid)
        name = self.name(tid) or "(anon)"
        return f"{KIND_NAMES.get(kind, '?')} {name}"

    # -- names ----------------------------------------------------------------

    def _name_index(self) -> dict[str, list[int]]:
        index = self._names
        if index is None:
            by_off: dict[int, list[int]] = {}
            words = self._words
            named = _NAMED_KINDS
            for tid, i in enumerate(self._starts):
                if tid == 0:
                    continue
                name_off = words[i]
                if name_off and ((words[i + 1] >> 24) & 0x1F) in named:
                    ids = by_off.get(name_off)
                    if ids is None:
                        by_off[name_off] = [tid]
                    else:
                        ids.append(tid)
            index = {}
            for off, ids in by_off.items():
                index.setdefault(self._str(off), []).extend(ids)
            self._names = index
        return index

    def find_types(self, name: str, kind: int | None = None) -> list[int]:
        """Ids of the named types (of one kind if given), in id order."""
        ids = self._name_index().get(name, [])
        if kind is None:
            return sorted(ids)
        return sorted(t for t in ids if self.kind(t) == kind)

    def _records_named(self, name: str) -> list[int]:
        """Structs/unions called `name` ("struct x", "union x" or bare), complete ones first."""
        kinds: tuple[int, ...] = (KIND_STRUCT, KIND_UNION)
        bare = name
        if name.startswith("struct "):
            kinds, bare = (KIND_STRUCT,), name[7:].strip()
        elif name.startswith("union "):
            kinds, bare = (KIND_UNION,), name[6:].strip()
        ids = [t for t in self.find_types(bare) if self.kind(t) in kinds]
        if not ids:
            # A typedef of a struct (e.g. atomic_t) also names a record.
            for t in self.find_types(bare, KIND_TYPEDEF):
                r = self.resolve(t)
                if self.kind(r) in kinds:
                    ids.append(r)
        complete = [t for t in ids if self._words[self._rec(t) + 2] > 0]
        return complete + [t for t in ids if t not in complete]

    def type_id(self, name: str) -> int:
        """Id of the type called `name`.

        `name` is "struct x", "union x", "enum x" or a bare name; a bare name is
        looked up as a struct, union, typedef, int, enum and float, in this
        order.  Among several structs of one name, a complete one (non-zero
        size) is preferred.
        """
        name = name.strip()
        if name.startswith(("struct ", "union ")):
            ids = self._records_named(name)
            if ids:
                return ids[0]
            self._fail(f"no {name}")
        if name.startswith("enum "):
            bare = name[5:].strip()
            ids = self.find_types(bare, KIND_ENUM) or self.find_types(bare, KIND_ENUM64)
            if ids:
                return ids[0]
            self._fail(f"no {name}")
        candidates = self.find_types(name)
        for kind in _BY_NAME_ORDER:
            ids = [t for t in candidates if self.kind(t) == kind]
            if kind in _RECORDS:
                complete = [t for t in ids if self._words[self._rec(t) + 2] > 0]
                ids = complete or ids
            if ids:
                return ids[0]
        self._fail(f"no type named {name!r}")

    # -- types ----------------------------------------------------------------

    def resolve(self, tid: int) -> int:
        """Follow typedefs and const/volatile/restrict/type tags."""
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            i = self._rec(tid)
            if ((self._words[i + 1] >> 24) & 0x1F) not in _MODIFIERS:
                return tid
            tid = self._words[i + 2]
        self._fail(f"typedef/modifier chain too long at type id {tid}")

    def pointer_size(self) -> int:
        """Size of a pointer: that of the kernel's `long` (BTF does not record it)."""
        if self._ptr_size is None:
            size = 8
            for name in ("long unsigned int", "long int", "unsigned long", "long"):
                ids = self.find_types(name, KIND_INT)
                if ids:
                    size = self._words[self._rec(ids[0]) + 2]
                    break
            self._ptr_size = size
        return self._ptr_size

    def size_of(self, tid: int) -> int:
        """Size in bytes of the type with this id."""
        tid = self.resolve(tid)
        if tid == 0:
            self._fail("void has no size")
        i = self._rec(tid)
        kind = (self._words[i + 1] >> 24) & 0x1F
        if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
            return self._words[i + 2]
        if kind == KIND_PTR:
            return self.pointer_size()
        if kind == KIND_ARRAY:
            return self._words[i + 5] * self.size_of(self._words[i + 3])
        self._fail(f"{self._describe(tid)} has no size")

    def type_size(self, name: str) -> int:
        """Size in bytes of a named type: "struct upid", "upid", "atomic_t", "int"...

        A name ending in "*" is a pointer (its pointee is not looked up).
        """
        if name.rstrip().endswith("*"):
            return self.pointer_size()
        return self.size_of(self.type_id(name))

    # -- members --------------------------------------------------------------

    def _find_member(self, tid: int, name: bytes) -> Member | None:
        """`name` in struct/union `tid`, looking inside anonymous members."""
        words = self._words
        strings = self._strings
        i = self._rec(tid)
        info = words[i + 1]
        kflag = info >> 31
        vlen = info & 0xFFFF
        key = name + b"\0"
        m = i + 3
        for _ in range(vlen):
            name_off = words[m]
            mtype = words[m + 1]
            raw = words[m + 2]
            m += 3
            if kflag:
                bits, size = raw & 0xFFFFFF, raw >> 24
            else:
                bits, size = raw, 0
            if name_off:
                if strings.startswith(key, name_off):
                    return Member(bits, mtype, size or self._int_bitfield_size(mtype))
                continue
            inner = self.resolve(mtype)
            if self.kind(inner) in _RECORDS:
                found = self._find_member(inner, name)
                if found is not None:
                    return Member(bits + found.bit_offset, found.type_id, found.bitfield_size)
        return None

    def _int_bitfield_size(self, tid: int) -> int:
        """Without kind_flag, a bitfield shows as an int whose bits do not fill it."""
        tid = self.resolve(tid)
        if self.kind(tid) != KIND_INT:
            return 0
        i = self._rec(tid)
        enc = self._words[i + 3]
        nr_bits = enc & 0xFF
        bits_offset = (enc >> 16) & 0xFF
        if bits_offset or nr_bits != self._words[i + 2] * 8:
            return nr_bits
        return 0

    def _resolve_path(self, tid: int, struct_name: str, member_path: str) -> Member:
        """Walk a dotted path (components may carry [N] indexes) from record `tid`."""
        if not member_path:
            self._fail(f"empty member path in {struct_name}")
        bit_offset = 0
        cur = tid
        walked: list[str] = []
        member: Member | None = None
        comps = member_path.split(".")
        for pos, comp in enumerate(comps):
            match = _COMPONENT.match(comp)
            if match is None:
                self._fail(f"bad member path {member_path!r} for {struct_name}")
            field, indexes = match.group(1), match.group(2)
            where = f"{struct_name}.{'.'.join(walked)}" if walked else struct_name
            rec = self.resolve(cur)
            if self.kind(rec) == KIND_PTR:
                self._fail(
                    f"{where} is a pointer; offsets do not follow pointers (path {member_path!r})"
                )
            if self.kind(rec) not in _RECORDS:
                self._fail(
                    f"{where} is not a struct/union but {self._describe(rec)} "
                    f"(path {member_path!r})"
                )
            found = self._find_member(rec, field.encode())
            if found is None:
                self._fail(f"{where} has no member {field!r}")
            if found.is_bitfield and (indexes or pos < len(comps) - 1):
                self._fail(f"{where}.{field} is a bitfield")
            bit_offset += found.bit_offset
            cur = found.type_id
            for idx in _INDEX.findall(indexes):
                arr = self.resolve(cur)
                if self.kind(arr) != KIND_ARRAY:
                    self._fail(f"{where}.{field} is not an array (path {member_path!r})")
                i = self._rec(arr)
                elem, nelems = self._words[i + 3], self._words[i + 5]
                n = int(idx)
                if nelems and n >= nelems:
                    self._fail(f"{where}.{field}[{n}] is out of bounds (array of {nelems})")
                bit_offset += n * self.size_of(elem) * 8
                cur = elem
            walked.append(comp)
            member = Member(bit_offset, cur, found.bitfield_size if not indexes else 0)
        assert member is not None
        return member

    def member(self, struct_name: str, member_path: str) -> Member:
        """Resolve `member_path` in the named struct/union (complete definitions first)."""
        ids = self._records_named(struct_name)
        if not ids:
            self._fail(f"no struct or union named {struct_name!r}")
        error: RecorderError | None = None
        for tid in ids:
            try:
                return self._resolve_path(tid, struct_name, member_path)
            except RecorderError as exc:
                error = error or exc
        assert error is not None
        raise error

    def member_offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of `member_path` ("pids", "live.counter", "pids[2]") in the struct.

        Members of anonymous structs/unions are found as if they were direct
        members, as in C.  Bitfields are refused (they have no byte offset).
        """
        member = self.member(struct_name, member_path)
        if member.is_bitfield:
            self._fail(
                f"{struct_name}.{member_path} is a bitfield "
                f"(bit {member.bit_offset}, {member.bitfield_size} bits); "
                "it has no byte offset"
            )
        return member.bit_offset // 8

    def member_size(self, struct_name: str, member_path: str) -> int:
        """Size in bytes of the member's type (bitfields refused)."""
        member = self.member(struct_name, member_path)
        if member.is_bitfield:
            self._fail(f"{struct_name}.{member_path} is a bitfield")
        return self.size_of(member.type_id)

    def has_member(self, struct_name: str, member_path: str) -> bool:
        """True if the struct exists and the path resolves (bitfields included)."""
        try:
            self.member(struct_name, member_path)
        except RecorderError:
            return False
        return True
