"""The BCC backend: program.py (BPF C text and cflags) -> backend.py (load, attach,
perf buffer, handshake, detach) -> decode.py (perf records -> events)."""

from proctrace_bcc.backends.bcc.backend import BccBackend, detach_tracepoints
from proctrace_bcc.backends.bcc.decode import decode, decode_exec, decode_fds

__all__ = ["BccBackend", "decode", "decode_exec", "decode_fds", "detach_tracepoints"]
