"""bpf_programs/proctrace.h and its ctypes mirror must agree: sizes, offsets, constants."""

from __future__ import annotations

import ctypes as ct
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from proctrace_bcc.backends import abi
from proctrace_bcc.programs import program_path

HEADER = program_path("proctrace.h")


def _text() -> str:
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


def _header_structs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, body in re.findall(r"(?:struct|union) (\w+) \{(.*?)\};", _text(), re.S):
        out[name] = re.findall(r"\b(\w+)(?:\[\w+\])?;", body)
    return out


def _header_constants() -> dict[str, int]:
    return {m[0]: int(m[1], 0) for m in re.findall(r"#define (PT_\w+) (0x[0-9a-fA-F]+|\d+)", HEADER.read_text())}


def _header_enums() -> dict[str, dict[str, int]]:
    return {name: {k: int(v, 0) for k, v in re.findall(r"(\w+) = (\w+)", body)}
            for name, body in re.findall(r"enum (\w+) \{(.*?)\};", _text(), re.S)}


def _tag(cls: type[ct.Structure | ct.Union]) -> str:
    return "union" if issubclass(cls, ct.Union) else "struct"


def test_same_structs_fields_and_constants() -> None:
    structs = _header_structs()
    assert set(structs) == set(abi.STRUCTS)
    for name, fields in structs.items():
        assert [f[0] for f in abi.STRUCTS[name]._fields_] == fields, name
        assert f"{_tag(abi.STRUCTS[name])} {name} {{" in _text(), name
    assert _header_constants() == abi.CONSTANTS
    assert _header_enums() == abi.ENUMS


def test_every_kind_has_its_payload() -> None:
    kinds = {n.removeprefix("PT_").lower() for n in abi.CONSTANTS
             if re.fullmatch(r"PT_[A-Z_]+", n) and not n.startswith(("PT_F_", "PT_FD_", "PT_ENV_", "PT_FATAL_"))}
    assert kinds == {f[0] for f in abi.PtPayload._fields_}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_sizes_and_offsets_match_the_c_compiler(tmp_path: Path) -> None:
    lines = []
    for name, cls in abi.STRUCTS.items():
        c = f"{_tag(cls)} {name}"
        lines.append(f'printf("{name} size %zu\\n", sizeof({c}));')
        for fname, *_ in cls._fields_:
            lines.append(
                f'printf("{name}.{fname} %zu %zu\\n", offsetof({c}, {fname}), '
                f"sizeof((({c} *)0)->{fname}));"
            )
    for enum_name, values in abi.ENUMS.items():
        for vname in values:
            lines.append(f'printf("{enum_name}.{vname} %d\\n", (int){vname});')
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
    for enum_name, values in abi.ENUMS.items():
        expected.extend(f"{enum_name}.{vname} {v}" for vname, v in values.items())
    assert got[:-1] == expected
