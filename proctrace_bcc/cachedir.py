"""The recorder's cache directory: only root (the user recording) may write there.

``$PROCTRACE_CACHE``, else ``/var/cache/proctrace-bcc``: the merged header tree
(headers.py), the kernel struct offsets (offsets.py) and the compiled BPF programs
(backends/bcc/cache.py).  The directory is created mode 0700; one owned by another
user, or writable by its group or the world, is not used (nor is any entry that is).

An entry is ``MAGIC``, the SHA-256 of its key and body (hex), a newline, then its
body: `load` returns the body only when the file is a regular file of ours, not
writable by others, and its digest matches the key asked for (a flipped byte, a
truncated file or an entry of another key all fail).  `store` writes a temporary
file (safe_open.temp_beside: O_EXCL|O_NOFOLLOW, 0600), fsyncs it and renames it over
the entry, so a reader sees the old entry or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from proctrace_bcc import safe_open

DEFAULT = "/var/cache/proctrace-bcc"
MAGIC = b"proctrace-bcc-cache 1 "


class Rejected(Exception):
    """An entry (or the directory) that must not be used: the reason, in a few words."""


def cache_dir() -> Path:
    return Path(os.environ.get("PROCTRACE_CACHE") or DEFAULT)


def _trusted(st: os.stat_result, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise Rejected(f"{what} is owned by uid {st.st_uid}, not {os.geteuid()}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Rejected(f"{what} is writable by group or others")


def ensure_dir(create: bool = True) -> Path:
    """The cache directory, checked (and made mode 0700 when we create it); Rejected if
    it is not a directory, another user's or writable by others (FileNotFoundError: it
    is missing and create=False)."""
    d = cache_dir()
    if create:
        with contextlib.suppress(FileExistsError):
            d.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(d, 0o700)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise Rejected(f"{d} is not a directory")
    _trusted(st, str(d))
    return d


def digest(key: str, body: bytes) -> bytes:
    return hashlib.sha256(key.encode() + b"\0" + body).hexdigest().encode()


def load(name: str, key: str) -> bytes:
    """The body of entry `name` if it is intact and was stored under `key`; Rejected
    (FileNotFoundError: there is none)."""
    d = ensure_dir(create=False)
    fd = os.open(d / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Rejected(f"{name} is not a regular file")
        _trusted(st, name)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    head, sep, body = data.partition(b"\n")
    if not sep or not head.startswith(MAGIC):
        raise Rejected(f"{name}: not a cache entry")
    if head[len(MAGIC):] != digest(key, body):
        raise Rejected(f"{name}: digest mismatch (corrupt, truncated or another key)")
    return body


def store(name: str, key: str, body: bytes) -> Path:
    """Write entry `name` atomically (see the module's doc); OSError/Rejected if not."""
    d = ensure_dir()
    path = d / name
    try:
        fd, tmp = safe_open.temp_beside(path)
    except safe_open.Unsafe as exc:
        raise Rejected(str(exc)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + digest(key, body) + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def entries(prefix: str) -> list[Path]:
    """The entries whose name starts with `prefix` (none when the directory is unusable)."""
    try:
        d = ensure_dir(create=False)
    except (FileNotFoundError, Rejected):
        return []
    return sorted(p for p in d.iterdir() if p.name.startswith(prefix))
