"""proctrace-bcc: record and analyze process lifecycle events with eBPF."""

__version__ = "0.1.0"
