"""One family of domain errors; the CLI maps each to a one-line message and an exit code."""

from __future__ import annotations

from pathlib import Path


class ProctraceError(Exception):
    """Base of every error we expect and report to the user without a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ProctraceError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class RecordingError(ProctraceError):
    """A recording (input file) is missing, unreadable or malformed."""

    exit_code = 3

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.detail = message


class RecorderError(ProctraceError):
    """The recorder cannot start or run (permissions, BPF, headers, backend)."""

    exit_code = 4


class BackendUnavailable(RecorderError):
    """A backend cannot run on this machine; `reason` says why in one line."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} backend unavailable: {reason}")
        self.backend = backend
        self.reason = reason
