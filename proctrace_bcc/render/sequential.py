"""`analyze -d sequential`: the events in timestamp order, NDJSON, cleaned up.

One externally tagged object per line, as in the recording, minus: the Header, events
of processes outside the analysed subtree, fields that are null or that this version
does not know, and ``truncated`` / ``core_dumped`` when false.  Strings keep the
recording's encoding (invalid UTF-8 as ``{"b64": ...}``), so the output is itself a
readable recording (without header).
For the original proctrace's recordings the events are the converted ones
(ExecFull and friends become Exec, see docs/format.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from proctrace_bcc.analysis import Analysis
from proctrace_bcc.render import json_safe

_FALSE_DEFAULTS = frozenset({"truncated", "core_dumped"})
_NL = orjson.OPT_APPEND_NEWLINE


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """The body without null fields and without false `truncated`/`core_dumped`."""
    return {k: v for k, v in body.items()
            if v is not None and not (v is False and k in _FALSE_DEFAULTS)}


def render_stream(an: Analysis) -> Iterator[bytes]:
    dumps = orjson.dumps
    for chunk in an.chunks():
        out: list[bytes] = []
        ap = out.append
        for _, _, tag, body, _, member in chunk:
            if member:
                for k in [k for k, v in body.items() if v is None or v is False]:
                    if body[k] is None or k in _FALSE_DEFAULTS:
                        del body[k]
                b = dumps({tag: body}, option=_NL)
                ap(json_safe(b) if not b.isascii() or b"\x7f" in b else b)
        if out:
            yield b"".join(out)
    an.check()  # no events, or a root that never appeared: an error, not an empty output
