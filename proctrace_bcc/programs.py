"""Where the kernel programs (bpf_programs/: .bpf.c, .h, .bt) are, for every backend.

The source is the top-level folder bpf_programs/; proctrace_bcc/bpf_programs is a
symbolic link to it, so the programs are package data: found the same way in a
source checkout, an editable install and a built wheel (which holds a copy).
"""

from __future__ import annotations

from pathlib import Path

from proctrace_bcc.errors import RecorderError


def program_path(name: str) -> Path:
    """The file `name` of bpf_programs/ (e.g. "proctrace.bpf.c"); RecorderError if absent."""
    # the package's folder, as importlib.resources.files() gives it (whose import costs
    # more than the rest of this module's users' start-up work)
    res = Path(__file__).parent / "bpf_programs" / name
    if res.is_file():  # installed as files (not from a zip)
        return res
    raise RecorderError(f"BPF program file {name} not found (looked for {res})")
