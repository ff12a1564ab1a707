"""The cache directory's entries (cachedir.py) and the BCC program image (image.py):
no kernel needed."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from proctrace_bcc import cachedir
from proctrace_bcc.backends.bcc.image import (
    LD_IMM64,
    Image,
    MapSpec,
    ProgSpec,
    relocate,
)
from proctrace_bcc.errors import RecorderError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("PROCTRACE_CACHE", str(d))
    return d


def test_store_then_load_round_trips(cache: Path) -> None:
    path = cachedir.store("e", "k", b"body\nwith lines")
    assert cachedir.load("e", "k") == b"body\nwith lines"
    assert path.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in cache.iterdir()] == ["e"]  # no temporary file left


def test_missing_entry_is_file_not_found(cache: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cachedir.load("e", "k")  # not even the directory
    cachedir.store("other", "k", b"x")
    with pytest.raises(FileNotFoundError):
        cachedir.load("e", "k")


@pytest.mark.parametrize("damage", ["flip", "truncate", "wrong_key", "not_an_entry"])
def test_damaged_entries_are_rejected(cache: Path, damage: str) -> None:
    path = cachedir.store("e", "k", b"0123456789" * 10)
    data = path.read_bytes()
    if damage == "flip":
        i = len(data) - 5
        path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    elif damage == "truncate":
        path.write_bytes(data[:-7])
    elif damage == "wrong_key":
        cachedir.store("e", "another key", b"0123456789" * 10)
    else:
        path.write_bytes(b"{}")
    with pytest.raises(cachedir.Rejected):
        cachedir.load("e", "k")


def test_entry_writable_by_others_is_rejected(cache: Path) -> None:
    path = cachedir.store("e", "k", b"x")
    path.chmod(0o622)
    with pytest.raises(cachedir.Rejected, match="writable"):
        cachedir.load("e", "k")


def test_directory_writable_by_others_is_rejected(cache: Path) -> None:
    cachedir.store("e", "k", b"x")
    cache.chmod(0o777)
    with pytest.raises(cachedir.Rejected, match="writable"):
        cachedir.load("e", "k")
    with pytest.raises(cachedir.Rejected):
        cachedir.store("e", "k", b"x")


def test_symlinked_entry_is_not_followed(cache: Path, tmp_path: Path) -> None:
    cachedir.store("real", "k", b"x")
    (cache / "e").symlink_to(cache / "real")
    with pytest.raises(OSError):
        cachedir.load("e", "k")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_entry_of_another_user_is_rejected(cache: Path) -> None:
    path = cachedir.store("e", "k", b"x")
    os.chown(path, 65534, 65534)
    with pytest.raises(cachedir.Rejected, match="owned by uid 65534"):
        cachedir.load("e", "k")


def _insn(code: int, regs: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, regs, 0, imm)


def test_relocate_zeroes_map_fds_and_records_them() -> None:
    insns = (_insn(0xB7, 1, 7)  # r1 = 7
             + _insn(LD_IMM64, 0x10 | 1, 42) + _insn(0)  # r1 = map fd 42
             + _insn(LD_IMM64, 2, 99) + _insn(0)  # r2 = 64-bit constant 99
             + _insn(LD_IMM64, 0x10 | 3, 43) + _insn(0)  # r3 = map fd 43
             + _insn(0x95))  # exit
    out, relocs = relocate(insns, {42: 0, 43: 1})
    assert relocs == ((1, 0), (5, 1))
    assert struct.unpack_from("<i", out, 1 * 8 + 4) == (0,)
    assert struct.unpack_from("<i", out, 5 * 8 + 4) == (0,)
    assert struct.unpack_from("<i", out, 3 * 8 + 4) == (99,)  # a constant stays
    with pytest.raises(RecorderError, match="fd 42"):
        relocate(insns, {43: 1})
    with pytest.raises(RecorderError, match="not supported"):
        relocate(_insn(LD_IMM64, 0x20, 5) + _insn(0), {})  # BPF_PSEUDO_MAP_VALUE


def test_image_round_trips_and_rejects_bad_relocations() -> None:
    img = Image("GPL", 1, (MapSpec("m", 1, 4, 4, 8, 0),),
                (ProgSpec("tracepoint__syscalls__sys_enter_prctl", _insn(0x95) * 3,
                          ((1, 0),)),
                 ProgSpec("raw_tracepoint__sched_process_exit", _insn(0x95), ())))
    assert Image.from_bytes(img.to_bytes()) == img
    assert img.progs[0].tracepoint == "syscalls:sys_enter_prctl"
    assert img.progs[1].tracepoint == "sched_process_exit"
    bad = img.to_bytes().replace(b"[[1, 0]]", b"[[3, 0]]")  # past the last instruction
    with pytest.raises(ValueError):
        Image.from_bytes(bad)
