"""Compiled programs, kept in the cache directory (cachedir.py) so that later runs
load them without clang (see image.py, loader.py).

An entry's key is everything that changes the compiled program: the BPF C and the
headers beside it, every cflag (the -D build options and the kernel's struct
offsets), the kernel (release, build, BTF identity), BCC's version and ours.
A missing entry is compiled and stored; an unusable one (corrupt, truncated,
another key, not ours, or one the kernel refuses) is said so in one notice and
compiled again.  ``record --no-cache`` compiles whatever the cache holds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from proctrace_bcc import __version__, btf, cachedir
from proctrace_bcc.backends.bcc.image import FORMAT, Image, compile_image
from proctrace_bcc.errors import BackendUnavailable
from proctrace_bcc.programs import program_path

PREFIX = "bcc-"


def bcc_version() -> str:
    """BCC's version without importing it (its import costs ~0.1 s); "" if absent."""
    spec = importlib.util.find_spec("bcc")
    if spec is None or spec.origin is None:
        return ""
    try:
        return (Path(spec.origin).parent / "version.py").read_text().strip()
    except OSError:
        return ""


def key(text: str, cflags: list[str]) -> str:
    headers = sorted(program_path("proctrace.h").parent.glob("*.h"))
    return json.dumps({
        "format": FORMAT, "proctrace-bcc": __version__, "bcc": bcc_version(),
        "kernel": btf.identity(), "cflags": cflags,
        "source": hashlib.sha256(text.encode()).hexdigest(),
        "headers": {h.name: hashlib.sha256(h.read_bytes()).hexdigest() for h in headers},
    }, sort_keys=True)


def entry_name(k: str) -> str:
    return f"{PREFIX}{hashlib.sha256(k.encode()).hexdigest()[:24]}.image"


def cached(k: str, notices: list[str]) -> Image | None:
    """The image stored under key `k`; None (with a notice unless simply missing)."""
    name = entry_name(k)
    try:
        return Image.from_bytes(cachedir.load(name, k))
    except FileNotFoundError:
        return None
    except cachedir.Rejected as exc:
        notices.append(f"program cache not used ({exc}); compiling")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        notices.append(f"program cache entry {name} not used ({exc}); compiling")
    return None


def compile_and_store(text: str, cflags: list[str], k: str, notices: list[str]) -> Image:
    """Compile with BCC (needs `bcc` and a header tree) and store the image under `k`."""
    if importlib.util.find_spec("bcc") is None:
        raise BackendUnavailable(
            "bcc", "python module `bcc` not importable (Debian: apt-get install "
            "python3-bpfcc; use /usr/bin/python3 or a venv with --system-site-packages)")
    from proctrace_bcc.headers import find_header_tree

    os.environ["BCC_KERNEL_SOURCE"] = str(find_header_tree().path)
    image = compile_image(text, cflags)
    try:
        cachedir.store(entry_name(k), k, image.to_bytes())
    except (OSError, cachedir.Rejected) as exc:
        notices.append(f"the compiled program is not cached ({exc})")
    return image


def state(variants: dict[str, str]) -> tuple[bool, str]:
    """For `doctor`: whether the cache is usable, and one line on what it holds
    (`variants`: label -> key of the programs `record` would load)."""
    d = cachedir.cache_dir()
    try:
        cachedir.ensure_dir(create=False)
    except FileNotFoundError:
        return True, f"{d}: empty (the first recording compiles and fills it)"
    except cachedir.Rejected as exc:
        return False, f"{d}: not usable ({exc}); every recording compiles"
    warm = []
    for label, k in variants.items():
        ok = cached(k, []) is not None
        warm.append(f"{label} {'cached' if ok else 'not cached (the next run compiles)'}")
    return True, f"{d}: {len(cachedir.entries(PREFIX))} compiled program(s); " + ", ".join(warm)
