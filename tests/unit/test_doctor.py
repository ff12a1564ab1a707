"""`doctor` picks a backend from its checks and explains why."""

from __future__ import annotations

from proctrace_bcc.doctor import Check, choose


def _checks(**bad: bool) -> list[Check]:
    names = ["root (CAP_BPF, CAP_PERFMON)", "tracefs", "kernel BTF",
             "kernel header tree (for BCC to compile)", "BCC python module", "bpftrace"]
    return [Check(n, not bad.get(n.split(" ")[0], False), "") for n in names]


def test_prefers_bcc_when_everything_is_there() -> None:
    assert choose(_checks())[0] == "bcc"


def test_falls_back_to_bpftrace_and_says_why() -> None:
    backend, why = choose(_checks(BCC=True))
    assert backend == "bpftrace" and "BCC python module" in why
    backend, why = choose(_checks(kernel=True))  # no header tree (and no BTF): nothing
    assert backend is None


def test_nothing_without_root() -> None:
    backend, why = choose(_checks(root=True))
    assert backend is None and "failed checks" in why
