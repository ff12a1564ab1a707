"""What the bpftrace renderer does differently per bpftrace release (docs/backends.md,
"bpftrace versions proven"): 0.17 (Debian 12), 0.23 (Debian 13) and 0.27 (Debian testing)
were run here (`make bpftrace-compat`); these check the rendering without bpftrace.
"""

from __future__ import annotations

import pytest

from proctrace_bcc.backends.bpftrace import parser, probe, script
from proctrace_bcc.backends.bpftrace.protocol import CHUNK
from proctrace_bcc.errors import RecorderError
from proctrace_bcc.events import Lost

V017, V021, V022, V023, V024, V027 = (0, 17, 0), (0, 21, 0), (0, 22, 0), (0, 23, 2), (0, 24, 0), (0, 27, 0)


def render(version: probe.Version, prepare: bool = True, init: bool = False) -> str:
    return script.render_script(script.script_path().read_text(), version, prepare, init)


@pytest.mark.parametrize("init", [True, False])
def test_pid_numbers_cast_in_0_17_offsetof_later(init: bool) -> None:
    """0.23 refuses to cast struct pid's flexible `numbers` array to a pointer."""
    old, new = render(V017, init=init), render(V023, init=init)
    assert "->numbers)" in old and "offsetof" not in old
    assert "offsetof(struct pid, numbers)" in new and "->numbers)" not in new
    assert "UPIDS(" not in old and "UPIDS(" not in new


@pytest.mark.parametrize("version", [V017, V023, V027])
def test_pid_translation_is_one_ternary(version: probe.Version) -> None:
    """0.23 segfaults compiling a ternary nested in another that reads kernel memory."""
    assert script._nr("$p", version).count("?") == 1
    assert "struct pid_namespace *" in script._nr("$p", version)
    text = render(version)
    assert "? NR(" not in script.script_path().read_text()
    assert all(line.count("?") <= 1 for line in text.splitlines() if "@inum" not in line)


@pytest.mark.parametrize("prepare", [True, False])
@pytest.mark.parametrize("version", [V022, V023])
def test_exec_probes_are_raw_where_data_loc_strings_are_misread(
        prepare: bool, version: probe.Version) -> None:
    text = render(version, prepare)
    assert "tracepoint:sched:sched_process_exec" not in text
    assert text.count("rawtracepoint:sched_process_exec") == 3
    assert ("rawtracepoint:sched_prepare_exec" in text) == prepare
    assert "tracepoint:sched:sched_prepare_exec" not in text
    for field_ in ("args.old_pid", "args.filename)", "args.interp"):
        assert field_ not in text
    assert "((struct linux_binprm *)arg2)->filename" in text
    assert "args.filename;" in text  # sys_enter_execve's user pointer stays a tracepoint arg


@pytest.mark.parametrize("version", [V017, V021, V024, V027])
def test_exec_probes_stay_tracepoints_elsewhere(version: probe.Version) -> None:
    text = render(version)
    assert "rawtracepoint" not in text
    assert text.count("tracepoint:sched:sched_process_exec") == 3


def test_raw_exec_probes_refuse_what_they_cannot_translate() -> None:
    with pytest.raises(RecorderError, match="shares its probe"):
        script.raw_exec_probes("tracepoint:sched:sched_process_exec,\ntracepoint:sched:sched_process_exit\n{\n}\n")
    with pytest.raises(RecorderError, match="no raw tracepoint argument"):
        script.raw_exec_probes("tracepoint:sched:sched_process_exec\n{\n  $x = args.pid;\n}\n")


def test_string_length_leaves_room_for_buf_from_0_22() -> None:
    """buf(x, 200) needs 204 bytes of scratch in 0.23 ("invalid access to map value")."""
    assert script.script_env(V017, 64)["BPFTRACE_STRLEN"] == str(CHUNK)
    assert script.script_env(V021, 64)["BPFTRACE_MAX_STRLEN"] == str(CHUNK)
    for v in (V022, V023, V027):
        env = script.script_env(v, 64)
        assert int(env["BPFTRACE_MAX_STRLEN"]) >= CHUNK + 4
        assert "BPFTRACE_STRLEN" not in env


def test_messages_of_0_27_are_parsed_once() -> None:
    """0.27 adds a top-level `count` next to `data`; captured from bpftrace 0.27.0."""
    p = parser.Parser(script.argv_chunks(49152), clock_offset=0)
    p.feed(b'{"type": "attached_probes", "count": 17, "data": {"probes": 17}}\n'
           b'{"type": "lost_events", "count": 19545, "data": {"events": 19545}}\n')
    assert p.attached == 17
    assert p.lost == 19545
    assert [e.count for e in p.take() if isinstance(e, Lost)] == [19545]
