"""The bpftrace backend, for machines that have bpftrace but cannot run BCC.

bpf_programs/proctrace.bt is rendered (script.py) for the bpftrace and kernel
found (probe.py) and run by `bpftrace -f json` (backend.py); its printf lines,
declared in protocol.py, become events (parser.py); check.py is the
self-check, `python -m proctrace_bcc.backends.bpftrace --check`.
"""

from proctrace_bcc.backends.bpftrace.backend import BpftraceBackend as BpftraceBackend
from proctrace_bcc.backends.bpftrace.backend import _Round as _Round
from proctrace_bcc.backends.bpftrace.probe import online_cpus as online_cpus
