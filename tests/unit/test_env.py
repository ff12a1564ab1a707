"""record --env without a kernel: the names chosen, the BCC maps, decode, the codec."""

from __future__ import annotations

import orjson
import pytest

from proctrace_bcc.backends import abi
from proctrace_bcc.backends.bcc.decode import split_env
from proctrace_bcc.backends.bcc.program import env_maps
from proctrace_bcc.codec import dumps_event, event_from_obj, fast_event
from proctrace_bcc.envvars import RUNNERS, choose
from proctrace_bcc.errors import UsageError
from proctrace_bcc.events import Exec, from_bytes
from proctrace_bcc.schema import checked


def test_choose() -> None:
    assert choose(None) == ()  # off by default (its cost: docs/benchmarks.md)
    assert choose(["tests"]) == RUNNERS
    assert choose(["FOO", "FOO"]) == ("FOO",)
    assert choose(["tests", "FOO", "PYTEST_CURRENT_TEST"]) == (*RUNNERS, "FOO")
    assert choose(["none"]) == ()
    assert choose(["tests", "FOO", "none", "BAR"]) == ("BAR",)
    for bad in ("", "1X", "A=B", "A B", "X" * 64):
        with pytest.raises(UsageError):
            choose(["none", bad])
    with pytest.raises(UsageError):
        choose(["tests", *(f"V{i}" for i in range(abi.PT_ENV_NAMES - len(RUNNERS) + 1))])


def test_maps_hash_only_bytes_every_name_has() -> None:
    names = ("X", *RUNNERS)
    conf, lengths = env_maps(names)
    assert lengths == {f"{n}=".encode(): len(n) + 1 for n in names}
    # the hash reads as many bytes as the shortest "NAME=" ("X=": 2)
    assert list(conf.hmask) == [0xFFFF] + [0] * (abi.PT_ENV_WORDS - 1)
    assert 1 <= sum(conf.used) <= len(names)
    assert env_maps(names)[0].mult[:] == conf.mult[:]  # seeded: the same maps each time


def test_split_env() -> None:
    data = b"A=1\0B=x=y\0A=2\0C\0D=\xff\0"
    assert split_env(data) == {"A": "1", "B": "x=y", "D": from_bytes(b"\xff")}
    assert split_env(b"") == {}


def test_codec_round_trip() -> None:
    ev = Exec.from_argv(1, 2, 3, 4, ["t"], env={"A": "v", "B": from_bytes(b"\xfe\xff")},
                        env_truncated=True)
    line = dumps_event(ev)
    body = orjson.loads(line)["Exec"]
    assert body["env"] == {"A": "v", "B": {"b64": "/v8="}} and body["env_truncated"] is True
    assert event_from_obj("Exec", dict(body)) == ev
    # as the reader passes it on: checked against the schema (an Irregular: b64 values)
    assert fast_event("Exec", checked("Exec", dict(body))) == ev
    plain = orjson.loads(dumps_event(Exec.from_argv(1, 2, 3, 4, ["t"])))["Exec"]
    assert "env" not in plain and "env_truncated" not in plain
    with pytest.raises(ValueError):
        event_from_obj("Exec", {**plain, "env": ["A"]})
