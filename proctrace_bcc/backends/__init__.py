"""Kernel backends: each turns kernel events into proctrace_bcc.events objects."""
