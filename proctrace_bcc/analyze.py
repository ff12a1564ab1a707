"""`proctrace-bcc analyze`: read a recording, pick the subtree, render one mode.

Output is written to a temporary file first and put in place (or copied to stdout)
only when the whole analysis succeeded, so an error never leaves half an output and
a pass can be started again (see :class:`proctrace_bcc.read.OutOfOrder`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from proctrace_bcc import safe_open
from proctrace_bcc.analysis import Analysis, TestSelection, release_tree, restrict, restrict_test
from proctrace_bcc.errors import ProctraceError
from proctrace_bcc.read import ORDERS, OutOfOrder, Source, read_recording
from proctrace_bcc.render.registry import Renderer, StreamRenderer, View, renderer
from proctrace_bcc.tree import Process, ProcessTree


def _encode(chunk: str | bytes) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    try:
        return chunk.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return chunk.encode("utf-8", "backslashreplace")


def _write(r: Renderer, src: Source, root_pid: int | None, order: str, view: View,
           sink: OutputSink, test: str | None = None) -> list[str]:
    """One attempt at the whole output; returns the reader's warnings."""
    if isinstance(r, StreamRenderer):
        keep = None
        if test is not None:  # the tree first: which processes the test has
            pre = Analysis(src, root_pid, order=order)
            try:
                pre.run()
                keep = TestSelection(pre.finish()[1], test)
            finally:
                pre.release()
        an = Analysis(src, root_pid, order=order, tree=False, info=r.info, keep=keep)
        try:
            sink.write_all(r.run(an))
        finally:
            an.release()
        return an.warnings
    if r.events:
        rec, tree = restrict_test(*restrict(read_recording(src), root_pid), test)
        try:
            sink.write_all(r.run(rec, tree, view))
        finally:
            release_tree(build_tree_roots(tree))
        return rec.warnings
    an = Analysis(src, root_pid, order=order)
    try:
        an.run()
        rec, tree = an.finish()
        if test is not None:
            tree = TestSelection(tree, test).tree(tree)
        sink.write_all(r.run(rec, tree, view))
    finally:
        an.release()
    return rec.warnings


def build_tree_roots(tree: ProcessTree) -> list[Process]:
    """Every process reachable from the tree (restrict() keeps only the subtree's)."""
    seen: list[Process] = []
    for r in tree.roots:
        seen.extend(r.walk())
    return seen or list(tree.processes)


class OutputSink:
    """Where output goes until it is complete: a temporary file, then put in place."""

    def __init__(self, output: Path | None) -> None:
        """`output` by safe_open's rules: a missing file or a regular file of ours is
        replaced (a temporary file beside it, renamed onto it); a stream (FIFO, device)
        is written at commit; `-`, /dev/stdout, /dev/fd/N: that descriptor."""
        self.given = 1 if output is None else safe_open.given_fd(str(output))
        self.output = None if self.given is not None else output
        self.replace = False  # rename the temporary file onto `output`
        try:
            if self.output is not None:
                self.replace = safe_open.replaceable(self.output)
            if self.output is not None and self.replace:
                fd, tmp = safe_open.temp_beside(self.output)
                self.tmp = str(tmp)
            else:
                fd, self.tmp = tempfile.mkstemp(prefix=".proctrace-", suffix=".tmp")
        except safe_open.Unsafe as exc:
            raise ProctraceError(f"cannot write {output}: {exc}") from None
        except OSError as exc:
            raise ProctraceError(f"cannot write {output or 'a temporary file'}: "
                                 f"{exc.strerror or exc}") from None
        self.f: IO[bytes] = os.fdopen(fd, "w+b")
        self.done = False

    def write_all(self, chunks: Iterable[str | bytes]) -> None:
        w = self.f.write
        for c in chunks:
            w(_encode(c))

    def reset(self) -> None:
        self.f.seek(0)
        self.f.truncate()

    def commit(self) -> None:
        self.f.flush()
        if self.replace:
            assert self.output is not None
            self.f.close()
            try:
                os.chmod(self.tmp, 0o666 & ~_umask())
                os.replace(self.tmp, self.output)
            except OSError as exc:
                raise ProctraceError(f"cannot write {self.output}: "
                                     f"{exc.strerror or exc}") from None
        else:
            self.f.seek(0)
            try:
                if self.given == 1:
                    out = sys.stdout.buffer
                    shutil.copyfileobj(self.f, out, 1 << 20)
                    out.flush()
                else:
                    with os.fdopen(self._stream_fd(), "wb") as o:
                        shutil.copyfileobj(self.f, o, 1 << 20)
            except safe_open.Unsafe as exc:
                raise ProctraceError(f"cannot write {self.output}: {exc}") from None
            except BrokenPipeError:
                # The reader went away (`| head`): not an error of ours.
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError as exc:
                where = self.output or ("stdout" if self.given == 1 else f"fd {self.given}")
                raise ProctraceError(f"cannot write {where}: {exc.strerror or exc}") from None
        self.done = True

    def _stream_fd(self) -> int:
        """The descriptor to copy the output to: the one given, or `output` opened."""
        if self.given is not None:
            return os.dup(self.given)
        assert self.output is not None
        o = safe_open.open_stream(str(self.output))
        o.close_dir()
        return o.fd

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
        if not (self.done and self.replace):
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def use_color(output: Path | None) -> bool:
    return (output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def output_view(output: Path | None, wide: bool, full: bool) -> View:
    """Colours and width when the output is our terminal (`wide`: lines kept whole);
    `full`: tables unbounded."""
    if output is not None or not sys.stdout.isatty():
        return View(full=full)
    width = None if wide else shutil.get_terminal_size().columns
    return View(use_color(output), width, full)


def analyze(input: str, output: Path | None, mode: str, root_pid: int | None,
            wide: bool = False, full: bool = False, test: str | None = None) -> None:
    """Render `input` (a path or '-') in `mode` to `output` (None: stdout); `test`:
    only the processes of the tests it names (analysis.TestSelection)."""
    r = renderer(mode)
    view = output_view(output, wide, full)
    was_enabled = gc.isenabled()
    gc.disable()  # millions of long-lived objects: collections would only cost time
    try:
        with Source(input) as src:
            sink = OutputSink(output)
            try:
                warnings = _run(r, src, root_pid, view, sink, test)
                sink.commit()
            finally:
                sink.discard()
    finally:
        if was_enabled:
            gc.enable()
    for w in warnings:
        sys.stderr.write(f"proctrace-bcc: warning: {w}\n")


def _run(r: Renderer, src: Source, root_pid: int | None, view: View,
         sink: OutputSink, test: str | None = None) -> list[str]:
    for order in ORDERS:
        try:
            return _write(r, src, root_pid, order, view, sink, test)
        except OutOfOrder:
            sink.reset()  # start again, tolerating more disorder
    raise AssertionError("unreachable: the last order sorts everything")


__all__ = ["analyze", "use_color"]
