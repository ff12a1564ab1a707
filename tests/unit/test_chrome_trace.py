"""`-d chrome-trace`: checked against the rules of the Trace Event Format.

The rules checked are those of the format's specification ("Trace Event Format",
the document chrome://tracing and Perfetto's JSON importer follow): the object form
holds `traceEvents`; every event has `ph`, `pid`, `tid` and (but metadata) `ts` in
microseconds; complete events (`X`) have a non-negative `dur`; instant events (`i`)
have a scope `s` in g/p/t; flow events (`s`/`f`) share `cat`, `name` and `id`, the end
binds to its enclosing slice with `bp: "e"`; metadata events (`M`) are named
process_name / thread_name / *_sort_index and carry `args`.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc.events import Event, Exec, Exit, Fork
from proctrace_bcc.render import chrome_trace
from proctrace_bcc.render._common import spans
from proctrace_bcc.tree import ProcessTree
from tests.unit.render_samples import HOSTILE, MS, load, write, write_mixed

METADATA_NAMES = {"process_name", "thread_name", "process_sort_index", "thread_sort_index",
                  "process_labels"}


def render(path: Path) -> dict[str, Any]:
    rec, tree = load(path)
    text = "".join(chrome_trace.render(rec, tree))
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


@pytest.fixture
def trace(tmp_path: Path) -> dict[str, Any]:
    return render(write_mixed(tmp_path / "rec.ndjson"))


def events(trace: dict[str, Any], ph: str) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == ph]


def check_format_rules(trace: dict[str, Any]) -> None:
    """The structural rules of the format (see module doc)."""
    assert isinstance(trace["traceEvents"], list)
    assert trace["displayTimeUnit"] in ("ms", "ns")
    for e in trace["traceEvents"]:
        ph = e["ph"]
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int), e
        assert isinstance(e["name"], str), e
        if ph == "M":
            assert e["name"] in METADATA_NAMES, e
            assert isinstance(e["args"], dict), e
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
        if ph == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
        elif ph == "i":
            assert e["s"] in ("g", "p", "t"), e
        elif ph in ("s", "t", "f"):
            assert "id" in e and "cat" in e, e
            if ph == "f":
                assert e.get("bp") == "e", e
        else:
            raise AssertionError(f"unexpected phase {ph!r}")
        if "args" in e:
            assert isinstance(e["args"], dict), e


def enclosing(trace: dict[str, Any], pid: int, tid: int, ts: float) -> list[dict[str, Any]]:
    return [x for x in events(trace, "X")
            if x["pid"] == pid and x["tid"] == tid and x["ts"] <= ts <= x["ts"] + x["dur"]]


def tracks_by_real_pid(trace: dict[str, Any]) -> dict[int, list[int]]:
    """real pid -> track ids, from the complete events' args, in first-seen order."""
    out: dict[int, list[int]] = defaultdict(list)
    for e in events(trace, "X"):
        tracks = out[e["args"]["pid"]]
        if e["pid"] not in tracks:
            tracks.append(e["pid"])
    return out


def last_span(trace: dict[str, Any], track: int) -> dict[str, Any]:
    xs = [e for e in events(trace, "X") if e["pid"] == track]
    return max(xs, key=lambda e: e["ts"])


def test_follows_the_format_rules(trace: dict[str, Any]) -> None:
    check_format_rules(trace)
    assert trace["otherData"]["command"] == "bash -c make test"
    assert trace["otherData"]["host"] == "ci-runner-7"


def test_one_named_track_per_process_and_reused_pid_gets_its_own(tmp_path: Path,
                                                                  trace: dict[str, Any]) -> None:
    _, tree = load(write_mixed(tmp_path / "r.ndjson"))
    tracks = tracks_by_real_pid(trace)
    assert sum(len(v) for v in tracks.values()) == len(tree.processes) == 8
    assert len(tracks[102]) == 2
    first, reused = tracks[102]
    assert first == 102 and reused not in {p.pid for p in tree.processes}
    names = {e["pid"]: e["args"]["name"] for e in events(trace, "M")
             if e["name"] == "process_name"}
    threads = {e["pid"]: e["args"]["name"] for e in events(trace, "M")
               if e["name"] == "thread_name"}
    assert set(names) == set(threads) == {t for v in tracks.values() for t in v}
    assert names[first] == "gcc -c a.c -o a.o"
    assert names[reused] == "true [pid 102, reused]"
    assert names[103] == "gcc -c bad file.c"
    # tree order: the sort index of a parent is below its children's
    order = {e["pid"]: e["args"]["sort_index"] for e in events(trace, "M")
             if e["name"] == "process_sort_index"}
    assert order[100] < order[101] < order[102] < order[103] < order[104] < order[105]


def test_complete_event_per_exec_span_in_microseconds(tmp_path: Path,
                                                      trace: dict[str, Any]) -> None:
    _, tree = load(write_mixed(tmp_path / "r.ndjson"))
    xs = events(trace, "X")
    assert len(xs) == sum(len(spans(p, tree.end)) for p in tree.processes)
    t0 = tree.start  # 1 ms
    gcc = [e for e in xs if e["pid"] == 102 and e["name"] == "gcc -c a.c -o a.o"]
    assert len(gcc) == 1
    # exec at 4.5 ms, exit at 20 ms, relative to the first event (1 ms): in microseconds
    assert gcc[0]["ts"] == pytest.approx((4 * MS + MS // 2 - t0) / 1000) == 3500.0
    assert gcc[0]["dur"] == pytest.approx(15500.0)
    assert gcc[0]["args"]["argv"] == ["gcc", "-c", "a.c", "-o", "a.o"]
    # 104: inherited image, then sh, then sleep; spans of one track do not overlap
    s104 = sorted((e for e in xs if e["pid"] == 104), key=lambda e: e["ts"])
    assert [e["name"] for e in s104] == ["make test", "sh -c sleep 100", "sleep 100"]
    for a, b in itertools.pairwise(s104):
        assert a["ts"] + a["dur"] <= b["ts"] + 1e-6
        assert a["args"]["ended_by"] == "exec"
    assert s104[0]["args"]["image"].startswith("inherited")


def test_exit_status_in_the_last_span_args(trace: dict[str, Any]) -> None:
    tracks = tracks_by_real_pid(trace)
    a = last_span(trace, 103)["args"]
    assert (a["status"], a["exit_code"], a["signal"]) == ("exit 1", 1, None)
    a = last_span(trace, 104)["args"]
    assert (a["status"], a["signal"]) == ("SIGKILL", 9)
    a = last_span(trace, 105)["args"]
    assert a["status"] == "running" and "exit_code" not in a
    a = last_span(trace, tracks[102][1])["args"]
    assert a["status"] == "exit 0" and a["pid"] == 102


def test_flows_from_parent_to_child_at_each_fork(tmp_path: Path, trace: dict[str, Any]) -> None:
    _, tree = load(write_mixed(tmp_path / "r.ndjson"))
    starts, ends = events(trace, "s"), events(trace, "f")
    forked = [p for p in tree.processes if p.fork_time is not None and p.parent is not None]
    assert len(starts) == len(ends) == len(forked) == 7
    ids = Counter(e["id"] for e in starts)
    assert all(n == 1 for n in ids.values())
    by_id = {e["id"]: e for e in starts}
    tracks = tracks_by_real_pid(trace)
    pairs = set()
    for f in ends:
        s = by_id[f["id"]]
        assert (s["cat"], s["name"]) == (f["cat"], f["name"])
        assert s["ts"] <= f["ts"]
        # each end binds to a slice on the child's track, each start to one on the parent's
        assert enclosing(trace, f["pid"], f["tid"], f["ts"])
        assert enclosing(trace, s["pid"], s["tid"], s["ts"])
        pairs.add((s["pid"], f["pid"]))
    assert (101, tracks[102][1]) in pairs  # the reused pid's flow goes to its own track
    assert {(100, 101), (101, 102), (101, 103), (101, 104), (100, 105), (100, 106)} <= pairs


def test_instants_for_setpgid_setsid_and_failed_exec(trace: dict[str, Any]) -> None:
    inst = events(trace, "i")
    by = {(e["pid"], e["name"].split("(")[0].split(":")[0]): e for e in inst}
    e = by[(106, "setpgid")]
    assert e["s"] == "t" and e["args"]["pgid"] == 106 and e["ts"] == pytest.approx(7100.0)
    e = by[(105, "setsid")]
    assert e["args"]["sid"] == 105
    e = by[(104, "exec failed")]
    assert e["args"] == {"filename": "/usr/bin/nosuch", "errno": 2, "error": "ENOENT"}
    lost = [e for e in inst if e["s"] == "g"]
    assert len(lost) == 1 and lost[0]["args"]["count"] == 3


def test_hostile_and_non_utf8_argv_are_kept_as_text(trace: dict[str, Any]) -> None:
    xs = events(trace, "X")
    daemon = last_span(trace, 105)
    assert daemon["args"]["argv"][1] == HOSTILE
    bad = last_span(trace, 106)
    assert bad["args"]["argv"] == ["\\xff\\xfe-bin", "arg"]
    assert bad["name"] == "\\xff\\xfe-bin arg"
    assert len(xs) > 0


def test_subtree_keeps_only_its_processes_events_and_flows(tmp_path: Path) -> None:
    rec, tree = load(write_mixed(tmp_path / "r.ndjson"))
    make = tree.find(101)[0]
    sub = ProcessTree(processes=list(make.walk()), roots=[make], header=tree.header,
                      start=tree.start, end=tree.end, lost=tree.lost,
                      end_event=tree.end_event, lost_events=tree.lost_events)
    obj = json.loads("".join(chrome_trace.render(rec, sub)))
    check_format_rules(obj)
    assert sorted(tracks_by_real_pid(obj)) == [101, 102, 103, 104]
    assert len(events(obj, "s")) == 4  # 101 -> 102, 103, 104, 102 again; not 100 -> 101
    names = [e["name"] for e in events(obj, "i")]
    assert "exec failed: /usr/bin/nosuch" in names
    assert not [n for n in names if n.startswith(("setsid", "setpgid"))]  # 105's and 106's


def test_process_running_before_the_recording_has_no_incoming_flow(tmp_path: Path) -> None:
    evs: list[Event] = [
        Exec.from_argv(10, 5, 1, 5, ["init-ish"]),
        Fork(timestamp=20, parent_pid=5, child_pid=6, parent_pgid=5),
        Exit(timestamp=30, pid=6, ppid=5, pgid=5, exit_code=0),
    ]
    obj = render(write(tmp_path / "r.ndjson", evs, None))
    check_format_rules(obj)
    assert len(events(obj, "s")) == 1 and events(obj, "f")[0]["pid"] == 6
    # nanosecond precision survives as fractional microseconds
    child = last_span(obj, 6)
    assert child["ts"] == pytest.approx(0.01) and child["dur"] == pytest.approx(0.01)


def test_recording_without_processes(tmp_path: Path) -> None:
    from proctrace_bcc.events import End, Lost

    obj = render(write(tmp_path / "r.ndjson",
                       [Lost(timestamp=5, count=2), End(timestamp=10, reason="timeout")], None))
    check_format_rules(obj)
    assert obj["traceEvents"] == [] and obj["otherData"]["lost_events"] == "2"
