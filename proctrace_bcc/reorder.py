"""The recorder's reorder buffer: events arrive per CPU, out of order; they leave in
timestamp order once older than a watermark.

The watermark is the start of the previous poll cycle, or what the backend proves
it has delivered (`Backend.synced_until()`: bpftrace's per-CPU handshakes) if that
is older: every event stamped before it has been added by then.  So nothing is
held back for more than about two poll intervals unless the backend lags.
"""

from __future__ import annotations

import heapq
import itertools

from proctrace_bcc.events import Event


def watermark(prev_cycle: int, proven: int | None) -> int:
    """The watermark (CLOCK_MONOTONIC ns) from the previous cycle's start and the proof."""
    return prev_cycle if proven is None else min(prev_cycle, proven)


class Reorder:
    """Releases events in timestamp order once they are older than a watermark."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Event]] = []
        self._seq = itertools.count()

    def add(self, events: list[Event]) -> None:
        for ev in events:
            heapq.heappush(self._heap, (ev.timestamp, next(self._seq), ev))

    def pop_until(self, watermark: int | None) -> list[Event]:
        """Every event stamped before `watermark` (None: every event), oldest first."""
        out: list[Event] = []
        h = self._heap
        while h and (watermark is None or h[0][0] < watermark):
            out.append(heapq.heappop(h)[2])
        return out
