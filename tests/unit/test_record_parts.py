"""The recorder's small parts (no root): stop reasons on disk, backend names, the
reorder buffer, CMD's exit status."""

from __future__ import annotations

import pytest

from proctrace_bcc.backends.select import check_name
from proctrace_bcc.child import exit_status
from proctrace_bcc.codec import dumps_event
from proctrace_bcc.errors import UsageError
from proctrace_bcc.events import End, Event, Fork, StopReason
from proctrace_bcc.reorder import Reorder, watermark


def test_stop_reasons_are_written_as_the_plain_words() -> None:
    assert [r.value for r in StopReason] == [
        "exited", "timeout", "grace", "interrupted", "terminated", "write_error"]
    assert dumps_event(End(5, StopReason.GRACE)) == dumps_event(End(5, "grace"))
    assert f"{StopReason.TIMEOUT}" == "timeout"


def test_unknown_backend_names_are_usage_errors() -> None:
    for name in ("auto", "bcc", "bpftrace"):
        check_name(name)
    with pytest.raises(UsageError, match="choose from auto, bcc, bpftrace"):
        check_name("ebpf")


def test_reorder_releases_older_than_the_watermark_in_order_ties_as_added() -> None:
    a, b, c, d = Fork(30, 1, 2, 1), Fork(10, 1, 3, 1), Fork(30, 1, 4, 1), Fork(50, 1, 5, 1)
    r = Reorder()
    batch: list[Event] = [a, b, c, d]
    r.add(batch)
    assert r.pop_until(30) == [b]
    assert r.pop_until(watermark(60, 31)) == [a, c]
    assert r.pop_until(None) == [d]
    assert watermark(60, None) == 60 and watermark(60, 70) == 60


def test_exit_status_is_the_shells() -> None:
    assert (exit_status(3), exit_status(-15)) == (3, 143)
