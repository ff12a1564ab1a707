"""Turning an exec's argument area into argv: shared by the BCC and bpftrace backends."""

from __future__ import annotations


def split_args(area: bytes, filename: bytes, script: bool, argv0: bytes | None,
               *, filename_cut: bool = False) -> tuple[list[bytes], list[bytes] | None, bool]:
    """(argv, interpreter, substituted) from the new image's argument area.

    `area` is the NUL-separated argument area of the new image (a final NUL is
    optional), `filename` the file the kernel executed (bprm->filename).  For a
    `#!` script (or binfmt_misc) the area is [interp, (interp arg), script
    filename, argv[1:]...] (nested scripts repeat the prefix): the interpreter
    is split off and the caller's argv[0] (read at syscall entry) put back.
    When that argv[0] is unknown the kernel's filename stands in and
    `substituted` is True (the caller must flag the event truncated).
    `filename_cut`: `filename` is only a prefix of the real one (it then
    matches an area element that starts with it).
    """
    if area.endswith(b"\0"):  # b"\0" is one empty argument, b"" none
        args = area[:-1].split(b"\0")
    else:
        args = area.split(b"\0") if area else []
    if not script:
        return args, None, False

    def same(a: bytes) -> bool:
        return a.startswith(filename) if filename_cut else a == filename

    j = next((i for i in range(1, len(args)) if same(args[i])), None)
    if j is None:
        return args, None, False
    substituted = argv0 is None
    first = args[j] if argv0 is None else argv0
    return [first, *args[j + 1:]], args[:j], substituted
