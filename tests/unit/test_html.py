"""`-d html`: the report's data, and that the file is self-contained and injection-safe.

The page's behaviour in a browser is tested in tests/browser/test_html_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from proctrace_bcc.events import Event, Exec, Exit, Fork
from proctrace_bcc.fds import Line, Ref, Since, Until, analyze_fds
from proctrace_bcc.render import fds as render_fds
from proctrace_bcc.render import html as html_report
from proctrace_bcc.render._common import concurrency
from tests.unit.fds_samples import BATS_LEAK, write_hostile_leak
from tests.unit.render_samples import AMP, HOSTILE, MS, load, write, write_mixed


class Page(HTMLParser):
    """Collects the elements and the text of every <script> of a document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self._buf = []

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._buf)))
            self._in_script = None


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    rec, tree = load(write_mixed(tmp_path / "rec.ndjson"))
    return "".join(html_report.render(rec, tree)), html_report.report_data(rec, tree)


def parse(doc: str) -> Page:
    page = Page()
    page.feed(doc)
    page.close()
    return page


def test_rows_in_tree_order_with_parents_and_outcomes(mixed: tuple[str, dict[str, Any]]) -> None:
    _, d = mixed
    p, strings = d["processes"], d["strings"]
    assert p["pid"] == [100, 101, 102, 103, 104, 102, 105, 106]
    assert p["parent"] == [-1, 0, 1, 1, 1, 1, 0, 0]
    assert [strings[i] for i in p["status"]] == [
        "exit 2", "exit 2", "exit 0", "exit 1", "SIGKILL", "exit 0", "running", "exit 3"]
    assert [d["codes"]["outcome"][c]["name"] for c in p["outcome"]] == [
        "nonzero", "nonzero", "ok", "nonzero", "signaled", "ok", "running", "nonzero"]
    assert p["outcome"] == [1, 1, 0, 1, 2, 0, 3, 1]
    assert p["pgid"][7] == 106 and p["sid"][6] == 105
    # times are ns from the first event (1 ms); a running process ends at the recording's end
    assert p["start"][:2] == [0, 1 * MS] and p["end"][6] == 49 * MS == d["end"]


def test_exec_spans_and_failed_execs(mixed: tuple[str, dict[str, Any]]) -> None:
    _, d = mixed
    p, s, strings = d["processes"], d["spans"], d["strings"]
    r = 4  # pid 104: inherited image, sh, sleep
    idx = range(p["span0"][r], p["span0"][r + 1])
    assert [strings[s["label"][i]] for i in idx] == ["make test", "sh -c sleep 100", "sleep 100"]
    assert s["argv"][idx[0]] == -1
    assert strings[s["argv"][idx[2]]] == "sleep 100"
    assert strings[s["file"][idx[2]]] == "/usr/bin/sleep"
    assert [s["start"][i] for i in idx] == [5 * MS, 5 * MS + 200_000, 5 * MS + 300_000]
    # argv with a space is quoted so the tooltip shows it unambiguously
    gcc = p["span0"][3 + 1] - 1
    assert strings[s["argv"][gcc]] == "gcc -c 'bad file.c'"
    assert d["failed_execs"]["row"] == [4]
    assert [strings[d["failed_execs"][k][0]] for k in ("file", "error")] == [
        "/usr/bin/nosuch", "ENOENT"]
    assert p["span0"][-1] == len(s["start"])


def test_summary(mixed: tuple[str, dict[str, Any]]) -> None:
    _, d = mixed
    assert d["summary"] == {
        "command": "bash -c make test",
        "start_time": "2024-05-01 12:00:00.000 +00:00",
        "duration": 49 * MS,
        "processes": 8,
        "execs": 9,
        "failed": 5,
        "signaled": 1,
        "running": 1,
        "lost": 3,
        "peak": 7,
        "peak_at": 7 * MS,
        "backend": "bcc",
        "host": "ci-runner-7",
        "kernel": "6.18.0",
        "end_reason": "exited",
        "recording": "rec.ndjson",
    }


def test_concurrency_is_a_step_function_of_processes_alive(tmp_path: Path) -> None:
    evs: list[Event] = [
        Exec.from_argv(0, 10, 1, 10, ["a"]),
        Fork(timestamp=100, parent_pid=10, child_pid=11, parent_pgid=10),
        Fork(timestamp=100, parent_pid=10, child_pid=12, parent_pgid=10),
        Exit(timestamp=300, pid=11, ppid=10, pgid=10, exit_code=0),
        Fork(timestamp=300, parent_pid=10, child_pid=13, parent_pgid=10),  # 11's end, 13's start
        Exit(timestamp=400, pid=12, ppid=10, pgid=10, exit_code=0),
        Exit(timestamp=500, pid=13, ppid=10, pgid=10, exit_code=0),
        Exit(timestamp=600, pid=10, ppid=1, pgid=10, exit_code=0),
    ]
    rec, tree = load(write(tmp_path / "r.ndjson", evs, None))
    assert concurrency(tree.processes, tree.end) == ([0, 100, 400, 500, 600], [1, 3, 2, 1, 0])
    d = html_report.report_data(rec, tree)
    assert (d["summary"]["peak"], d["summary"]["peak_at"]) == (3, 100)
    # no Header line: a recording of the original proctrace
    assert d["summary"]["command"] == "a"
    assert d["summary"]["backend"] == "proctrace (original)"


def test_self_contained_no_network(mixed: tuple[str, dict[str, Any]]) -> None:
    doc, _ = mixed
    page = parse(doc)
    for tag, attrs in page.tags:
        assert "src" not in attrs, (tag, attrs)
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
    assert not re.search(r"https?://", doc)
    csp = [a["content"] for t, a in page.tags
           if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in (csp[0] or "")
    # the one executable script is allowed by its hash, nothing else is
    code = [text for attrs, text in page.scripts if "type" not in attrs]
    assert len(code) == 1 and len(page.scripts) == 2
    digest = base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in (csp[0] or "")


def test_hostile_argv_cannot_break_out_of_the_data_block(
        mixed: tuple[str, dict[str, Any]]) -> None:
    doc, d = mixed
    page = parse(doc)
    # the parser sees exactly our elements: no <img>, two scripts, data intact
    assert [t for t, _ in page.tags if t in ("img", "script")] == ["script", "script"]
    (data_attrs, data_text), _ = page.scripts
    assert data_attrs == {"type": "application/json", "id": "proctrace-data"}
    assert not set(data_text) & set("<>&")
    assert json.loads(data_text) == json.loads(json.dumps(d))
    assert any(HOSTILE in s and AMP in s for s in d["strings"])
    assert "\\xff\\xfe-bin arg" in d["strings"]
    assert HOSTILE not in doc and "<img" not in doc


def test_title_is_escaped(tmp_path: Path) -> None:
    evs: list[Event] = [Exec.from_argv(0, 10, 1, 10, ["</title><script>alert(1)</script>"]),
           Exit(timestamp=5, pid=10, ppid=1, pgid=10, exit_code=0)]
    rec, tree = load(write(tmp_path / "r.ndjson", evs, None))
    doc = "".join(html_report.render(rec, tree))
    page = parse(doc)
    assert [t for t, _ in page.tags].count("script") == 2
    assert "<title>proctrace: &lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in doc


def test_start_time_is_shortened_for_people() -> None:
    assert html_report._start_time("2026-11-26T06:53:34.765219+00:00") == (
        "2026-11-26 06:53:34.765 +00:00")
    assert html_report._start_time("2026-11-26T06:53:34-05:30") == (
        "2026-11-26 06:53:34.000 -05:30")
    assert html_report._start_time("2026-11-26T06:53:34") == "2026-11-26 06:53:34.000"
    assert html_report._start_time("yesterday") == "yesterday"


def test_json_for_script_escapes_html_specials() -> None:
    out = html_report.json_for_script({"a": "</script>&<!--\u2028"})
    assert out == '{"a":"\\u003c/script\\u003e\\u0026\\u003c!--\\u2028"}'
    assert json.loads(out) == {"a": "</script>&<!--\u2028"}


def test_recording_without_processes(tmp_path: Path) -> None:
    from proctrace_bcc.events import End, Lost

    rec, tree = load(write(tmp_path / "r.ndjson",
                           [Lost(timestamp=5, count=2), End(timestamp=10, reason="timeout")], None))
    d = html_report.report_data(rec, tree)
    assert d["processes"]["pid"] == [] and d["processes"]["span0"] == [0]
    assert (d["summary"]["processes"], d["summary"]["lost"], d["summary"]["peak"]) == (0, 2, 0)
    page = parse("".join(html_report.render(rec, tree)))
    assert len(page.scripts) == 2


# ---------------------------------------------------------------------------
# The descriptors section (recordings made with `record --fds`)


def _segs(d: dict[str, Any], segs: list[Any]) -> list[Any]:
    """The data's segments (string-table indices) as text and [mention, row] links."""
    return [d["strings"][g] if isinstance(g, int) else [d["strings"][g["text"]], g["row"]]
            for g in segs]


def _text(segs: list[Any]) -> str:
    return "".join(g if isinstance(g, str) else g[0] for g in segs)


def _links(segs: list[Any]) -> list[tuple[str, int]]:
    return [(g[0], g[1]) for g in segs if not isinstance(g, str)]


def _channels(f: dict[str, Any]) -> list[dict[str, Any]]:
    """The channels table as one dict per channel, its holders one dict each."""
    ch, ho = f["channels"], f["holders"]
    out = []
    for k in range(len(ch["name"])):
        rows = range(ch["holder0"][k], ch["holder0"][k + 1])
        out.append({**{c: v[k] for c, v in ch.items() if c != "holder0"},
                    "holders": [{c: v[i] for c, v in ho.items()} for i in rows]})
    return out


def test_no_descriptor_section_without_descriptor_data(mixed: tuple[str, dict[str, Any]]) -> None:
    doc, d = mixed
    assert "fds" not in d
    assert 'id="fds-sec"' not in doc and "Descriptors" not in doc


def test_descriptor_section_of_a_real_bats_leak() -> None:
    rec, tree = load(BATS_LEAK)
    d = html_report.report_data(rec, tree)
    doc = "".join(html_report.render(rec, tree))
    assert doc.count('<section id="fds-sec">') == 1
    pid = d["processes"]["pid"]
    f = d["fds"]
    rep = analyze_fds(tree)
    assert (f["pipes"], f["sockets"], f["observed"], f["open_at_end"]) == (15, 0, 29, 2)
    assert f["nleaks"] == len(f["leaks"]) == len(rep.leaks) == 1
    (lk,) = rep.leaks
    sleep, bats = lk.process, lk.source
    (leak,) = f["leaks"]
    # the same words as `analyze -d fds`, line by line
    want = [s.strip() for s in render_fds.leak_lines(lk, tree.start)]
    lines = [_segs(d, line) for line in leak["lines"]]
    assert [_text(line) for line in lines] == want
    assert want[0].startswith(f"sleep 300 (pid {sleep.pid}) holds fd 3, a pipe (write end, "
                              f"{lk.channel.name}) that bats (pid {bats.pid}) opened")
    # every process it names links to that process's timeline row
    links = _links(lines[0])
    assert links[0] == (f"sleep 300 (pid {sleep.pid})", leak["row"])
    assert links[1] == (f"bats (pid {bats.pid})", pid.index(bats.pid))
    assert [pid[r] for _, r in links] == [sleep.pid, bats.pid, *(q.pid for q, _ in lk.chain)]
    assert links[2][0].startswith("bats-exec-suite (pid ") and links[2][0].endswith(", fd 1)")
    (waiter,) = lk.waiting
    assert _links(lines[2]) == [(f"bats (pid {waiter.process.pid}, fd 0)",
                                     pid.index(waiter.process.pid))]
    assert pid[leak["row"]] == sleep.pid
    # the chain: from bats down to the sleep, with the fds each was seen using
    strings = d["strings"]
    assert [(pid[c["row"]], strings[c["name"]], c["fds"]) for c in leak["chain"]] == [
        (bats.pid, "bats", []), *((q.pid, render_fds.name(q), fds) for q, fds in lk.chain),
        (sleep.pid, "sleep", [3])]
    # pipes: the leaked one first; the sleep marked leaked, the reader waiting
    chans = _channels(f)
    assert len(chans) == 15 and chans[0]["name"] == lk.channel.name
    assert [f["codes"]["kind"][c["kind"]] for c in chans] == ["pipe"] * 15
    first = chans[0]
    opener = _segs(d, first["opener"])
    assert _text(opener) == render_fds.opener_words(lk.channel)
    assert _links(opener) == [(f"bats (pid {bats.pid})", pid.index(bats.pid))]
    holders = first["holders"]
    assert (first["open_at_end"], first["hidden"], len(holders)) == (
        2, 0, len(lk.channel.holders))
    by_pid = {pid[h["row"]]: h for h in holders}
    h = by_pid[sleep.pid]
    assert (strings[h["command"]], h["fds"], strings[h["end"]], h["since_kind"], h["until"],
            h["until_kind"], h["mark"]) == (
        "sleep 300", [3], "write", Since.FORK, None, Until.OPEN, render_fds.Mark.LEAKED)
    assert h["since"] == sleep.start - tree.start
    reader = by_pid[waiter.process.pid]
    assert strings[reader["command"]] == f"bats hang.bats (fork of pid {bats.pid}, never exec'd)"
    assert (strings[reader["end"]], reader["since_kind"], reader["until_kind"],
            reader["mark"]) == ("read", Since.END, Until.OPEN, render_fds.Mark.WAITING)
    suite = by_pid[lk.chain[0][0].pid]
    assert (suite["until_kind"], suite["mark"]) == (Until.EXIT, render_fds.Mark.NONE)
    assert suite["until"] == lk.chain[0][0].exit_time - tree.start  # type: ignore[operator]
    # the other pipes are not leaked; every pid's row is the right process
    assert all(h["mark"] == render_fds.Mark.NONE for c in chans[2:] for h in c["holders"])
    assert all(pid[h["row"]] in {p.pid for p in tree.processes}
               for c in chans for h in c["holders"])
    # the codes come with their words: the page has no table of its own
    codes = f["codes"]
    assert codes["since"][h["since_kind"]] == "{t} fork"
    assert codes["until"][h["until_kind"]] == {"text": "still open", "at_end": True}
    assert codes["until"][suite["until_kind"]] == {"text": "{t} exit", "at_end": False}
    assert codes["mark"][h["mark"]] == "leaked" and codes["mark"][suite["mark"]] == ""


def test_sentence_segments_link_the_processes_they_name(tmp_path: Path) -> None:
    """Processes are references, worded as `analyze -d fds` words them, never parsed back."""
    _, tree = load(write_hostile_leak(tmp_path / "r.ndjson"))
    index = {p.key: i for i, p in enumerate(tree.walk())}
    sh, daemon, reader = (tree.find(pid)[0] for pid in (10, 11, 12))
    st = html_report._Strings()
    line: Line = [Ref(reader, (0,)), " waits on ", Ref(sh), "; nobody (pid 99) and (pid 10 x"]
    assert _segs({"strings": st.items}, html_report._segments(line, st, index)) == [
        ["reader (pid 12, fd 0)", index[reader.key]], " waits on ",
        ["sh (pid 10)", index[sh.key]], "; nobody (pid 99) and (pid 10 x"]
    # named by its program alone (no pid), or without a row: text, merged with its neighbours
    line = ["was ", Ref(daemon, bare=True), " then ", Ref(sh), "."]
    assert _segs({"strings": st.items}, html_report._segments(line, st, {})) == [
        "was daemon then sh (pid 10)."]


def test_hostile_argv_in_the_descriptor_section_stays_data(tmp_path: Path) -> None:
    rec, tree = load(write_hostile_leak(tmp_path / "r.ndjson"))
    d = html_report.report_data(rec, tree)
    doc = "".join(html_report.render(rec, tree))
    page = parse(doc)
    assert [t for t, _ in page.tags if t in ("img", "script")] == ["script", "script"]
    (_, data_text), _ = page.scripts
    assert not set(data_text) & set("<>&")
    assert json.loads(data_text) == json.loads(json.dumps(d))
    (leak,) = d["fds"]["leaks"]
    head = _text(_segs(d, leak["lines"][0]))
    assert head.startswith('daemon </script><img src=x onerror="window.__pwned=1">')
    assert "<img" not in doc and "</script><img" not in doc
    holder = _channels(d["fds"])[0]["holders"][0]
    assert d["strings"][holder["command"]] == head.split(" (pid ")[0]  # the same label, as text


def test_descriptor_section_caps_keep_the_leaked_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    rec, tree = load(BATS_LEAK)
    full = _channels(html_report.report_data(rec, tree)["fds"])
    monkeypatch.setattr(html_report, "HOLDERS_MAX", 3)
    monkeypatch.setattr(html_report, "CHANNELS_MAX", 2)
    d = html_report.report_data(rec, tree)
    f, pid = d["fds"], d["processes"]["pid"]
    chans = _channels(f)
    assert len(chans) == 2 and f["pipes"] == 15  # the page says "the first 2 of 15"
    holders = chans[0]["holders"]
    assert chans[0]["name"] == full[0]["name"]
    assert len(holders) == 3 and chans[0]["hidden"] == len(full[0]["holders"]) - 3
    # the leaked sleep and the waiting reader are kept, with the first holder by time
    assert sorted(h["mark"] for h in holders) == [render_fds.Mark.NONE, render_fds.Mark.LEAKED,
                                                  render_fds.Mark.WAITING]
    shown = [pid[h["row"]] for h in holders]  # in the same order as in the full table
    assert shown == [pid[h["row"]] for h in full[0]["holders"] if pid[h["row"]] in shown]
    assert shown[0] == pid[full[0]["holders"][0]["row"]]
