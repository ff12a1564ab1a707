"""proctrace_bcc.btf and proctrace_bcc.offsets.

Part 1 builds BTF blobs with a small encoder written here from the format
description (Documentation/bpf/btf.rst), so the reader is tested on any OS.
Part 2 compares every offset we compute on the running kernel with what gcc's
offsetof/sizeof say on a header bpftool dumps from the same BTF.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from proctrace_bcc import offsets as offsets_mod
from proctrace_bcc.btf import BTF, VMLINUX_BTF
from proctrace_bcc.errors import RecorderError
from proctrace_bcc.offsets import (
    REQUIRED,
    SIZES,
    choose_path,
    defines,
    kernel_offsets,
    offsets_from_btf,
)
from proctrace_bcc.programs import program_path

# --------------------------------------------------------------------------
# A BTF encoder (independent of the reader: it only follows the format doc).

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19


class Encoder:
    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.records: list[list[int]] = []  # u32 words per type, id = index + 1

    def s(self, name: str | None) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(
        self,
        kind: int,
        name: str | None = None,
        size_or_type: int = 0,
        vlen: int = 0,
        kflag: int = 0,
        extra: tuple[int, ...] = (),
    ) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.records.append([self.s(name), info, size_or_type, *extra])
        return len(self.records)

    def int_(self, name: str, size: int, bits: int | None = None, signed: bool = True) -> int:
        enc = (1 if signed else 0) << 24 | (bits if bits is not None else size * 8)
        return self.add(INT, name, size, extra=(enc,))

    def struct(
        self,
        name: str | None,
        size: int,
        members: list[tuple[str | None, int, int, int]],  # name, type, bit offset, bitfield size
        kflag: int = 0,
        kind: int = STRUCT,
    ) -> int:
        words: list[int] = []
        for mname, mtype, bit_off, bf_size in members:
            off = (bf_size << 24 | bit_off) if kflag else bit_off
            words += [self.s(mname), mtype, off]
        return self.add(kind, name, size, vlen=len(members), kflag=kflag, extra=tuple(words))

    def blob(self, *, version: int = 1, big_endian: bool = False) -> bytes:
        order = ">" if big_endian else "<"
        types = b"".join(struct.pack(f"{order}{len(r)}I", *r) for r in self.records)
        header = struct.pack(
            f"{order}HBBIIIII", 0xEB9F, version, 0, 24, 0, len(types), len(types),
            len(self.strings),
        )  # fmt: skip
        return header + types + bytes(self.strings)


def synthetic() -> Encoder:
    e = Encoder()
    t_int = e.int_("int", 4)
    t_uint = e.int_("unsigned int", 4, signed=False)
    t_long = e.int_("long int", 8)
    # Kinds the reader must step over without understanding them.
    e.add(ENUM, "color", 4, vlen=2, extra=(e.s("RED"), 0, e.s("BLUE"), 1))
    e.add(ENUM64, "big", 8, vlen=1, extra=(e.s("HUGE"), 1, 2))
    proto = e.add(FUNC_PROTO, None, t_int, vlen=2, extra=(e.s("a"), t_int, e.s("b"), t_long))
    e.add(FUNC, "f", proto)
    var = e.add(VAR, "v", t_int, extra=(1,))
    e.add(DATASEC, ".data", 4, vlen=1, extra=(var, 0, 4))
    e.add(FLOAT, "double", 8)
    e.add(DECL_TAG, "tag", var, extra=(0xFFFFFFFF,))
    t_user_int = e.add(TYPE_TAG, "user", t_int)
    # The types the tests ask about.
    inner = e.struct("inner", 8, [("a", t_int, 0, 0), ("b", t_user_int, 32, 0)])
    inner_t = e.add(TYPEDEF, "inner_t", inner)
    c_inner = e.add(CONST, None, inner_t)
    v_int = e.add(VOLATILE, None, t_int)
    p_inner = e.add(PTR, None, inner)
    e.add(RESTRICT, None, p_inner)
    anon_union = e.struct(None, 8, [("x", t_long, 0, 0), ("y", c_inner, 0, 0)], kind=UNION)
    anon_struct = e.struct(None, 8, [("lo", t_uint, 0, 0), ("hi", v_int, 32, 0)])
    arr = e.add(ARRAY, None, 0, extra=(t_int, t_uint, 4))
    flex = e.add(ARRAY, None, 0, extra=(inner, t_uint, 0))
    e.struct("outer", 0, [])  # an empty definition, to be passed over
    e.add(FWD, "outer")
    outer = e.struct(
        "outer",
        48,
        [
            ("m0", t_int, 0, 0),
            ("bf1", t_uint, 32, 3),
            ("bf2", t_uint, 35, 5),
            (None, anon_union, 64, 0),
            ("p", p_inner, 128, 0),
            ("arr", arr, 192, 0),
            (None, anon_struct, 320, 0),
            ("tail", flex, 384, 0),
        ],
        kflag=1,
    )
    e.add(TYPEDEF, "outer_t", outer)
    t_nibble = e.int_("unsigned int", 4, bits=4, signed=False)  # pre-kflag bitfield
    e.struct("legacy", 8, [("n", t_int, 0, 0), ("bits", t_nibble, 40, 0)])
    atomic = e.struct(None, 4, [("counter", t_int, 0, 0)])
    atomic_t = e.add(TYPEDEF, "atomic_t", atomic)
    e.struct("holder", 8, [("pad", t_int, 0, 0), ("live", atomic_t, 32, 0)])
    e.struct("dup", 4, [("a", t_int, 0, 0)])
    e.struct("dup", 8, [("pad", t_int, 0, 0), ("b", t_int, 32, 0)])
    return e


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF(synthetic().blob(), "synthetic")


def test_direct_members_and_sizes(btf: BTF) -> None:
    assert btf.member_offset("outer", "m0") == 0
    assert btf.member_offset("outer", "p") == 16
    assert btf.member_offset("outer", "arr") == 24
    assert btf.member_offset("inner", "b") == 4
    assert btf.type_size("struct outer") == 48
    assert btf.type_size("outer") == 48  # the complete one, not the empty one or the fwd
    assert btf.type_size("outer_t") == 48
    assert btf.type_size("inner_t") == 8
    assert btf.type_size("int") == 4
    assert btf.type_size("long int") == 8
    assert btf.type_size("enum color") == 4
    assert btf.type_size("atomic_t") == 4
    assert btf.type_size("struct inner *") == 8
    assert btf.type_count == len(synthetic().records)


def test_anonymous_members_resolve_like_c(btf: BTF) -> None:
    assert btf.member_offset("outer", "x") == 8
    assert btf.member_offset("outer", "y") == 8
    assert btf.member_offset("outer", "y.b") == 12  # through const -> typedef -> struct
    assert btf.member_offset("outer", "lo") == 40
    assert btf.member_offset("outer", "hi") == 44  # volatile int
    assert btf.member_size("outer", "y") == 8
    assert btf.member_size("outer", "hi") == 4
    assert btf.member_size("outer", "arr") == 16


def test_dotted_paths_arrays_and_typedefs(btf: BTF) -> None:
    assert btf.member_offset("holder", "live.counter") == 4
    assert btf.member_offset("holder", "live") == 4
    assert btf.member_offset("atomic_t", "counter") == 0  # typedef of a struct
    assert btf.member_offset("outer", "arr[2]") == 32
    assert btf.member_offset("outer", "tail") == 48
    assert btf.member_offset("outer", "tail[1].b") == 60  # flexible array: any index
    assert btf.member_offset("struct outer", "tail[1]") == 56


def test_same_name_structs(btf: BTF) -> None:
    assert btf.member_offset("dup", "a") == 0
    assert btf.member_offset("dup", "b") == 4
    assert btf.type_size("dup") == 4  # the first complete one


def test_bitfields_are_refused(btf: BTF) -> None:
    for member in ("bf1", "bf2"):
        assert btf.has_member("outer", member)
        with pytest.raises(RecorderError, match=rf"outer\.{member} is a bitfield"):
            btf.member_offset("outer", member)
    assert btf.member("outer", "bf2").bit_offset == 35
    assert btf.member("outer", "bf2").bitfield_size == 5
    with pytest.raises(RecorderError, match=r"legacy\.bits is a bitfield"):
        btf.member_offset("legacy", "bits")
    with pytest.raises(RecorderError, match="bitfield"):
        btf.member_size("outer", "bf1")


def test_lookup_errors_are_one_line(btf: BTF) -> None:
    cases = [
        (("outer", "nope"), "outer has no member 'nope'"),
        (("outer", "y.nope"), r"outer\.y has no member 'nope'"),
        (("nostruct", "a"), "no struct or union named 'nostruct'"),
        (("outer", "p.a"), r"outer\.p is a pointer"),
        (("outer", "m0.a"), r"outer\.m0 is not a struct/union"),
        (("outer", "arr[4]"), "out of bounds"),
        (("outer", "m0[1]"), "not an array"),
        (("outer", "a b"), "bad member path"),
    ]
    for args, pattern in cases:
        assert not btf.has_member(*args)
        with pytest.raises(RecorderError, match=pattern) as info:
            btf.member_offset(*args)
        assert "\n" not in str(info.value)
        assert str(info.value).startswith("BTF synthetic: ")
    with pytest.raises(RecorderError, match="no type named 'nothing'"):
        btf.type_size("nothing")
    with pytest.raises(RecorderError, match="no struct nothing"):
        btf.type_size("struct nothing")


def test_bad_files(tmp_path: Path) -> None:
    good = synthetic().blob()
    e = synthetic()
    e.add(25, "future")  # a kind this reader does not know
    header = struct.unpack_from("<HBBIIIII", good)
    cases = {
        "empty": (b"", "too short"),
        "elf": (b"\x7fELF" + bytes(40), "not BTF"),
        "be": (synthetic().blob(big_endian=True), "big-endian BTF is not supported"),
        "v2": (synthetic().blob(version=2), "version 2"),
        "cut": (good[: len(good) - 40], "out of bounds"),
        "kind": (e.blob(), "unknown kind 25"),
        # type section shortened by one word: the last record overruns it
        "trunc": (
            struct.pack("<HBBIIIII", *header[:5], header[5] - 4, header[6] - 4, header[7])
            + good[24 : 24 + header[5] - 4]
            + good[24 + header[5] :],
            "ends inside a type record",
        ),
    }
    for name, (data, pattern) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(RecorderError, match=pattern) as info:
            BTF.load(path)
        assert str(info.value).startswith(f"BTF {path}: "), name
    with pytest.raises(RecorderError, match="not found"):
        BTF.load(tmp_path / "missing")
    with pytest.raises(RecorderError, match="cannot read"):
        BTF.load(tmp_path)  # a directory


# --------------------------------------------------------------------------
# offsets.py on a synthetic kernel: every REQUIRED struct, members in list order.


# A struct layout: member name -> its own members (empty: an 8-byte long).
Tree = dict[str, "Tree"]


def fake_kernel() -> tuple[bytes, dict[str, int]]:
    """BTF with every struct of REQUIRED (8-byte members) and the values expected.

    Each struct's second half sits in an anonymous struct (like randomized
    task_struct layouts); dotted paths become nested structs.
    """
    e = Encoder()
    t_long = e.int_("long int", 8)
    tree: Tree = {}
    for _define, struct_name, spec in REQUIRED:
        node = tree.setdefault(struct_name, {})
        for comp in spec.split("|")[0].split("."):
            node = node.setdefault(comp, {})

    def build(name: str | None, children: Tree, split: bool) -> tuple[int, int]:
        """Encode a struct; returns (type id, size)."""
        members: list[tuple[str | None, int, int, int]] = []
        names = list(children)
        half = len(names) // 2 if split and len(names) > 1 else len(names)
        off = 0
        for member in names[:half]:
            sub = children[member]
            tid, size = build(None, sub, False) if sub else (t_long, 8)
            members.append((member, tid, off * 8, 0))
            off += size
        if half < len(names):
            tid, size = build(None, {n: children[n] for n in names[half:]}, False)
            members.append((None, tid, off * 8, 0))
            off += size
        return e.struct(name, off, members), off

    for struct_name, children in tree.items():
        build(struct_name, children, True)

    # Expected values, from the layout rule alone (as in C, members of the
    # anonymous tail count as direct members).
    def size_of(children: Tree) -> int:
        return sum(size_of(c) for c in children.values()) if children else 8

    def offset_in(children: Tree, path: list[str]) -> int:
        off = 0
        for member, sub in children.items():
            if member == path[0]:
                return off + (offset_in(sub, path[1:]) if len(path) > 1 else 0)
            off += size_of(sub)
        raise AssertionError(path)

    expected: dict[str, int] = {}
    for define, struct_name, spec in REQUIRED:
        expected[define] = offset_in(tree[struct_name], spec.split("|")[0].split("."))
    for define, ctype in SIZES:
        if ctype.endswith("*"):
            expected[define] = 8
        else:
            expected[define] = size_of(tree[ctype.removeprefix("struct ")])
    return e.blob(), expected


def test_required_is_what_the_bpf_c_uses() -> None:
    """Every OFF_/SIZE_ the BPF C reads is provided, and nothing provided is unused
    (a required member the kernel lacks aborts start-up: it must be needed)."""
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", program_path("proctrace.bpf.c").read_text(), flags=re.S)
    used = set(re.findall(r"\b((?:OFF|SIZE)_[A-Z0-9_]*[A-Z0-9])\b", code))
    provided = [d for d, _s, _p in REQUIRED] + [d for d, _t in SIZES]
    assert len(provided) == len(set(provided))
    assert set(provided) == used


def test_offsets_from_synthetic_kernel(tmp_path: Path) -> None:
    data, expected = fake_kernel()
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    values = kernel_offsets(path)
    assert values == expected
    assert len(values) == len(REQUIRED) + len(SIZES)
    assert len(set(values.values())) > 5  # not all the same number
    path.unlink()
    assert kernel_offsets(path) == expected  # cached: the file is not read again
    assert defines(values)[0] == f"-D{REQUIRED[0][0]}={expected[REQUIRED[0][0]]}"
    assert all(d.startswith("-D") and "=" in d for d in defines(values))


def test_offsets_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, expected = fake_kernel()
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    assert offsets_mod.main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"# {path}: ")
    printed = {line.split()[0]: int(line.split()[1]) for line in out[1:]}
    assert printed == expected
    assert offsets_mod.main([str(tmp_path / "none")]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_missing_member_is_named(btf: BTF) -> None:
    with pytest.raises(
        RecorderError, match=r"no struct or union named 'task_struct' \(needed for OFF_TASK_TGID\)"
    ):
        offsets_from_btf(btf)
    assert choose_path(btf, "outer", "nope|y.b") == "y.b"
    with pytest.raises(RecorderError, match=r"outer has no member 'nope' \(also tried: zip\)"):
        choose_path(btf, "outer", "nope|zip")


# --------------------------------------------------------------------------
# The running kernel, against gcc's offsetof on bpftool's header.


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


@pytest.mark.skipif(not os.path.exists(VMLINUX_BTF), reason=f"no {VMLINUX_BTF}")
def test_kernel_offsets_match_gcc(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    btf = BTF.load()
    # Reported, not asserted: timing depends on the machine.
    print(f"BTF load: {btf.type_count} types in {btf.load_seconds * 1000:.1f} ms")
    record_property("btf_load_ms", round(btf.load_seconds * 1000, 1))
    ours = offsets_from_btf(btf)

    bpftool, gcc = _tool("bpftool"), _tool("gcc")
    if bpftool is None or gcc is None:
        pytest.skip("bpftool and gcc are needed for the ground truth (apt-get install bpftool gcc)")
    header = tmp_path / "vmlinux.h"
    with header.open("wb") as out:
        subprocess.run(
            [bpftool, "btf", "dump", "file", VMLINUX_BTF, "format", "c"], stdout=out, check=True
        )
    lines = [
        '#include "vmlinux.h"',
        "extern int printf(const char *, ...);",
        "int main(void) {",
    ]
    for define, struct_name, spec in REQUIRED:
        path = choose_path(btf, struct_name, spec)
        lines.append(
            f'  printf("{define} %lu\\n", '
            f"(unsigned long)__builtin_offsetof(struct {struct_name}, {path}));"
        )
    for define, ctype in SIZES:
        lines.append(f'  printf("{define} %lu\\n", (unsigned long)sizeof({ctype}));')
    lines += ["  return 0;", "}"]
    (tmp_path / "offsets.c").write_text("\n".join(lines) + "\n")
    exe = tmp_path / "offsets"
    compiled = subprocess.run(
        [gcc, "-w", "-D__always_inline=inline", "-o", str(exe), str(tmp_path / "offsets.c")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    theirs = {
        name: int(value) for name, value in (line.split() for line in run.stdout.splitlines())
    }
    assert theirs == ours
