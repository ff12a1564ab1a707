"""bpf_programs/proctrace.h and its ctypes mirror must agree: sizes, offsets, constants."""

from __future__ import annotations

import ctypes as ct
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from proctrace_bcc.backends import abi

HEADER = Path(__file__).resolve().parents[2] / "bpf_programs" / "proctrace.h"


def _header_structs() -> dict[str, list[str]]:
    text = HEADER.read_text()
    out: dict[str, list[str]] = {}
    for name, body in re.findall(r"struct (\w+) \{(.*?)\};", text, re.S):
        out[name] = re.findall(r"\b(\w+)(?:\[\w+\])?;", re.sub(r"/\*.*?\*/", "", body, flags=re.S))
    return out


def _header_constants() -> dict[str, int]:
    return {m[0]: int(m[1], 0) for m in re.findall(r"#define (PT_\w+) (0x[0-9a-fA-F]+|\d+)", HEADER.read_text())}


def test_same_structs_fields_and_constants() -> None:
    structs = _header_structs()
    assert set(structs) == set(abi.STRUCTS)
    for name, fields in structs.items():
        assert [f[0] for f in abi.STRUCTS[name]._fields_] == fields, name
    assert _header_constants() == abi.CONSTANTS


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_sizes_and_offsets_match_the_c_compiler(tmp_path: Path) -> None:
    lines = []
    for name, cls in abi.STRUCTS.items():
        lines.append(f'printf("{name} size %zu\\n", sizeof(struct {name}));')
        for fname, *_ in cls._fields_:
            lines.append(
                f'printf("{name}.{fname} %zu %zu\\n", offsetof(struct {name}, {fname}), '
                f"sizeof(((struct {name} *)0)->{fname}));"
            )
    src = tmp_path / "abi.c"
    src.write_text(
        f'#include <stdio.h>\n#include <stddef.h>\n#include "{HEADER}"\n'
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "abi"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    got = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    expected = []
    for name, cls in abi.STRUCTS.items():
        expected.append(f"{name} size {ct.sizeof(cls)}")
        for fname, *_ in cls._fields_:
            f = getattr(cls, fname)
            expected.append(f"{name}.{fname} {f.offset} {f.size}")
    assert got[:-1] == expected
