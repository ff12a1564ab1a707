"""The BCC backend: program.py (BPF C text and cflags) -> cache.py (the compiled
image: stored, else compiled by BCC, image.py) -> loader.py (maps, load, attach,
perf buffers through libbcc_bpf, libbcc.py) -> backend.py (handshake, polling,
close) -> decode.py (perf records -> events)."""

from proctrace_bcc.backends.bcc.backend import BccBackend
from proctrace_bcc.backends.bcc.decode import decode, decode_exec, decode_fds

__all__ = ["BccBackend", "decode", "decode_exec", "decode_fds"]
