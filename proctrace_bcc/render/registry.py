"""Every `analyze -d MODE`: what its renderer needs, and the renderer (imported lazily).

A mode is one of two kinds:

- :class:`StreamRenderer`: consumes the streaming pass itself
  (:class:`proctrace_bcc.analysis.Analysis` with ``tree=False``: only which events
  belong to the subtree, :class:`proctrace_bcc.membership.Membership`; ``info`` keeps
  each process's commands); no tree, no event objects (sequential, by-process);
- :class:`TreeRenderer`: renders ``(Recording, ProcessTree, View)``.  With ``events``,
  ``Recording.events`` holds every event object of the analysed subtree (html,
  chrome-trace; fds and summary, for the hang snapshot's ProcState events); without,
  it is empty and the tree is built in a streaming pass (mermaid, tree).
  :class:`View` says how the output is read (a terminal's colours and width, --all).

Renderers yield chunks of text (``bytes`` chunks are written as they are).  Each entry
calls its module through a typed function, so mypy checks every path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from proctrace_bcc.errors import UsageError

if TYPE_CHECKING:
    from proctrace_bcc.analysis import Analysis
    from proctrace_bcc.read import Recording
    from proctrace_bcc.tree import ProcessTree

Chunks = Iterable[str | bytes]


@dataclass(frozen=True, slots=True)
class View:
    """How the output is read: colours (a terminal, NO_COLOR unset), the width to fit
    lines to (a terminal without --wide; None: keep every line whole), and `full`
    (analyze --all: tables unbounded)."""

    color: bool = False
    width: int | None = None
    full: bool = False


@dataclass(frozen=True, slots=True)
class StreamRenderer:
    module: str
    run: Callable[[Analysis], Chunks]
    info: bool = False  # Membership(info=True): each process's commands


@dataclass(frozen=True, slots=True)
class TreeRenderer:
    module: str
    run: Callable[[Recording, ProcessTree, View], Chunks]
    events: bool  # Recording.events: every event object of the subtree


Renderer = StreamRenderer | TreeRenderer


def _sequential(an: Analysis) -> Chunks:
    from proctrace_bcc.render import sequential

    return sequential.render_stream(an)


def _by_process(an: Analysis) -> Chunks:
    from proctrace_bcc.render import by_process

    return by_process.render_stream(an)


def _mermaid(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import mermaid

    return mermaid.render(rec, tree)


def _tree(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import tree as tree_mod

    return tree_mod.render(rec, tree, color=view.color, width=view.width)


def _html(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import html

    return html.render(rec, tree)


def _chrome_trace(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import chrome_trace

    return chrome_trace.render(rec, tree)


def _fds(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import fds

    return fds.render(rec, tree, full=view.full)


def _tests(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import tests

    return tests.render(rec, tree)


def _summary(rec: Recording, tree: ProcessTree, view: View) -> Chunks:
    from proctrace_bcc.render import summary

    return summary.render(rec, tree)


RENDERERS: dict[str, Renderer] = {
    "sequential": StreamRenderer("proctrace_bcc.render.sequential", _sequential),
    "by-process": StreamRenderer("proctrace_bcc.render.by_process", _by_process, info=True),
    "mermaid": TreeRenderer("proctrace_bcc.render.mermaid", _mermaid, events=False),
    "tree": TreeRenderer("proctrace_bcc.render.tree", _tree, events=False),
    "html": TreeRenderer("proctrace_bcc.render.html", _html, events=True),
    "chrome-trace": TreeRenderer("proctrace_bcc.render.chrome_trace", _chrome_trace,
                                 events=True),
    # events: the hang snapshot's ProcState events
    "fds": TreeRenderer("proctrace_bcc.render.fds", _fds, events=True),
    "summary": TreeRenderer("proctrace_bcc.render.summary", _summary, events=True),
    "tests": TreeRenderer("proctrace_bcc.render.tests", _tests, events=False),
}
# Mode name -> renderer module.
MODES: dict[str, str] = {mode: r.module for mode, r in RENDERERS.items()}


def renderer(mode: str) -> Renderer:
    """The renderer of a mode, its module imported; UsageError for an unknown or
    unavailable mode."""
    module(mode)
    return RENDERERS[mode]


def module(mode: str) -> ModuleType:
    """The module of a mode (see renderer)."""
    name = MODES.get(mode)
    if name is None:
        raise UsageError(f"unknown display mode {mode!r} (choose from: {', '.join(MODES)})")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise UsageError(f"display mode {mode!r} is not available in this version") from None
        raise
