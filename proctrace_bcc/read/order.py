"""Putting a recording's events in timestamp order (ties in file order).

The recorder writes events in order, so a pass first assumes that (DIRECT) and falls
back to a reordering window (WINDOWED), then to sorting the whole file in memory (ALL),
each time a pass meets an event older than those already passed on (:class:`OutOfOrder`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# One event as the pipeline carries it: (timestamp, line number, kind, body).
Obj = tuple[int, int, str, dict[str, Any]]

# Events held back to put slightly out-of-order lines in order.
WINDOW = 4096
# How much disorder a pass tolerates (see Reader.chunks); `analyze` tries them in turn.
DIRECT, WINDOWED, ALL = "direct", "window", "all"
ORDERS = (DIRECT, WINDOWED, ALL)


class OutOfOrder(Exception):
    """An event is older than events already passed on: start again, more tolerant."""

    def __init__(self, lineno: int) -> None:
        super().__init__(f"line {lineno} is out of order beyond the reordering window")
        self.lineno = lineno


def _first_disorder(chunk: list[Obj], prev: int) -> int:
    """The line of the first event in chunk older than the one before it."""
    for ts, lineno, _tag, _body in chunk:
        if ts < prev:
            return lineno
        prev = ts
    return chunk[-1][1] if chunk else 0


def _order(o: Obj) -> tuple[int, int]:
    return o[0], o[1]


def in_order(chunks: Iterable[tuple[list[Obj], bool]]) -> Iterator[list[Obj]]:
    """DIRECT: the chunks as they are; OutOfOrder at the first event older than the one
    before it."""
    prev = -(1 << 62)
    for chunk, ordered in chunks:
        if not ordered:
            raise OutOfOrder(_first_disorder(chunk, prev))
        if chunk:
            prev = chunk[-1][0]
            yield chunk


def sort_all(chunks: Iterable[tuple[list[Obj], bool]]) -> Iterator[list[Obj]]:
    """ALL: every event, sorted in memory, as one chunk."""
    every = [o for chunk, _ in chunks for o in chunk]
    every.sort(key=_order)
    yield every


def reorder(chunks: Iterable[tuple[list[Obj], bool]], window: int = WINDOW
            ) -> Iterator[list[Obj]]:
    """WINDOWED: sort an almost sorted stream of chunks, holding back `window` events.

    Raises OutOfOrder when an event is older than one already yielded.
    """
    carry: list[Obj] = []
    last: int | None = None
    for chunk, ordered in chunks:
        if not chunk:
            continue
        if carry:
            both = carry + chunk
            if not ordered or chunk[0][0] < carry[-1][0]:
                both.sort(key=_order)
        else:
            both = chunk
            if not ordered:
                both.sort(key=_order)
        if len(both) <= window:
            carry = both
            continue
        out = both[:-window]
        carry = both[-window:]
        if last is not None and out[0][0] < last:
            raise OutOfOrder(out[0][1])
        last = out[-1][0]
        yield out
    if carry:
        if last is not None and carry[0][0] < last:
            raise OutOfOrder(carry[0][1])
        yield carry
