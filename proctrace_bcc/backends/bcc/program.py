"""The BCC program: bpf_programs/proctrace.bpf.c and the -D cflags it is built with
(build options from the recorder's config, kernel struct offsets from BTF)."""

from __future__ import annotations

import ctypes as ct
import os
import random
from typing import TYPE_CHECKING

from proctrace_bcc import offsets
from proctrace_bcc.backends import abi
from proctrace_bcc.backends.base import BackendConfig
from proctrace_bcc.programs import program_path

if TYPE_CHECKING:
    from proctrace_bcc.backends.bcc.loader import Loaded

SOURCE = "proctrace.bpf.c"
HANDSHAKE = 0x50544243  # prctl option no kernel knows ("PTBC"): returns EINVAL
TRACED_MAX = 65536


def source() -> str:
    """The BPF C text (without the cflags)."""
    return program_path(SOURCE).read_text()


def cflags(config: BackendConfig) -> list[str]:
    """Every -I/-D flag BCC compiles the program with."""
    flags = [
        f"-I{program_path('proctrace.h').parent}",
        f"-DFILTER={0 if config.tracer_pid is None else 1}",
        f"-DHANDSHAKE={HANDSHAKE}",
        f"-DARGV_MAX={config.argv_bytes()}",
        f"-DNCPU={os.cpu_count() or 1}",
        f"-DTRACED_MAX={TRACED_MAX}",
        f"-DWITH_FDS={1 if config.fds else 0}",
        f"-DWITH_ENV={1 if config.env else 0}",
    ]
    return flags + offsets.defines(offsets.kernel_offsets(use_cache=config.cache))


def _words(raw: bytes) -> list[int]:
    """`raw` as PT_ENV_WORDS little-endian u64 words, zero-padded."""
    raw = raw.ljust(8 * abi.PT_ENV_WORDS, b"\0")
    return [int.from_bytes(raw[8 * w:8 * w + 8], "little") for w in range(abi.PT_ENV_WORDS)]


def _env_hash(key: list[int], conf: abi.PtEnvConf) -> int:
    """The slot read_env() computes for an entry whose first words are `key`."""
    h: int = sum((k & m) * c for k, m, c in zip(key, list(conf.hmask), list(conf.mult),
                                                strict=True))
    return (h % (1 << 64)) >> (64 - abi.PT_ENV_SLOT_BITS)


def env_maps(names: tuple[str, ...]) -> tuple[abi.PtEnvConf, dict[bytes, int]]:
    """The `env_conf` value and the `env_names` entries ("NAME=" key bytes -> length)
    that make read_env() keep exactly `names` (envvars.choose()'s: at most
    PT_ENV_NAMES, each "NAME=" within PT_ENV_WORDS words).

    Entries are hashed over as many bytes as the shortest "NAME=" has, so the hash
    never reads past a chosen prefix; a used slot sends the entry to the lookup.  The
    multipliers are seeded: the same names give the same maps."""
    prefixes = [f"{n}=".encode() for n in names]
    conf = abi.PtEnvConf()
    conf.hmask[:] = _words(b"\xff" * min(len(p) for p in prefixes))
    rng = random.Random(0x50544243)
    conf.mult[:] = [rng.getrandbits(64) | 1 for _ in range(abi.PT_ENV_WORDS)]
    for p in prefixes:
        conf.used[_env_hash(_words(p), conf)] = 1
    return conf, {p: len(p) for p in prefixes}


def fill_env(loaded: Loaded, names: tuple[str, ...]) -> None:
    """Fill the program's `env_conf` and `env_names` maps for `names` (see env_maps)."""
    conf, lengths = env_maps(names)
    loaded.update("env_conf", ct.c_int(0), conf)
    for prefix, length in lengths.items():
        key = abi.PtEnvKey()
        key.word[:] = _words(prefix)
        loaded.update("env_names", key, ct.c_uint32(length))


def program_text(config: BackendConfig) -> str:
    """The program as --print-bpf shows it: its cflags as comments, then the source."""
    head = "\n".join(f"// cflag: {f}" for f in cflags(config))
    return f"{head}\n{source()}"
