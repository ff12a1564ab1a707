"""Which test started each process: per-test attribution (issue 15).

A pure function of the tree (:func:`attribute`).  A test is named by the nearest of,
walking up from a process through its ancestors (the process itself first):

- a test boundary: a ``bats-exec-test`` process (bats runs each test in one); its
  argv holds the test file, the test's function name (bats encodes the description
  into it: :func:`bats_description` decodes it), its number in the suite and in the
  file;
- a test named by the runner's variables in the environment of the process's exec
  (``record --env``, :mod:`proctrace_bcc.envvars`): ``PYTEST_CURRENT_TEST``
  (``"path::name (phase)"``), ``BATS_TEST_FILENAME`` + ``BATS_TEST_NAME``,
  ``NEXTEST_BINARY_ID`` + ``NEXTEST_TEST_NAME``.  A value the top of the tree was
  started with names a test outside the recording (a suite run from inside another
  suite's test) and is ignored.

Processes with neither are the suite's (setup, the runner itself).

When a test ended: a bats test when its ``bats-exec-test`` exited.  A test named only
by variables has no process of its own: it ended at the latest when the next test of
the same runner process started its first process, or when the runner exited
(``Test.ended_by``); ``Test.end`` is when the last of its processes that had exited
by then exited.  A test that started no process is not seen at all.  A process that
was still running after its test ended (``Test.leftovers``) is what hangs suites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proctrace_bcc.tree import Process, ProcessTree

BATS_BOUNDARY = "bats-exec-test"
# bats-exec-test's options before its positional arguments (bats 1.8.2); the value
# taking one is listed in _BATS_VALUED.
_BATS_FLAGS = frozenset({"-T", "-x", "--dummy-flag", "--trace", "--print-output-on-failure",
                         "--show-output-of-passing-tests", "--verbose-run"})
_BATS_VALUED = frozenset({"--gather-test-outputs-in"})
_HEX = re.compile(r"-([0-9a-f]{2})")
_PHASE = re.compile(r" \((setup|call|teardown)\)$")

Key = tuple[str, str | None, str]  # (runner, file, name as the runner spells it)


@dataclass(frozen=True, slots=True)
class Identity:
    """What names a test: the runner, the file, the name, its numbers."""

    runner: str  # "bats", "pytest", "nextest"
    file: str | None
    name: str  # as the runner spells it (bats: the encoded function name)
    number: int | None = None  # bats: its number in the file
    suite_number: int | None = None  # bats: its number in the suite
    description: str | None = None  # bats: BATS_TEST_DESCRIPTION, when exported

    @property
    def key(self) -> Key:
        return (self.runner, self.file, self.name)


@dataclass(eq=False, slots=True)
class Test:
    """One run of a test and the processes attributed to it (fork order)."""

    __test__ = False  # not a pytest test class
    identity: Identity
    boundary: Process | None  # its bats-exec-test process (None: named by variables)
    processes: list[Process] = field(default_factory=list)
    start: int = 0
    end: int | None = None  # see the module doc; None: still running at the end
    ended_by: int | None = None  # it had certainly ended then (None: not known)
    runner: Process | None = None  # the process its processes were started under
    leftovers: list[Process] = field(default_factory=list)  # longest past its end first

    @property
    def name(self) -> str:
        """The test's name as a person wrote it (bats: the description)."""
        i = self.identity
        if i.description:
            return i.description
        if i.runner == "bats":
            return bats_description(i.name)
        return i.name

    @property
    def file(self) -> str | None:
        return self.identity.file

    @property
    def number(self) -> int | None:
        return self.identity.number

    @property
    def failed(self) -> list[Process]:
        """Its processes that failed (not its bats-exec-test: that is the outcome)."""
        return [p for p in self.processes if p.failed and p is not self.boundary]

    @property
    def outcome(self) -> str | None:
        """bats: "ok", "failed" or "running"; None when the runner does not show it."""
        b = self.boundary
        if b is None:
            return None
        if b.exit is None:
            return "running"
        return "failed" if b.failed else "ok"

    def outlived(self, p: Process, tree_end: int) -> int:
        """How long `p` ran on after this test ended (0 if it did not)."""
        if self.ended_by is None:
            return 0
        return max(0, p.end_time(tree_end) - self.ended_by)

    def duration(self, tree_end: int) -> int:
        return (self.end if self.end is not None else tree_end) - self.start

    def matches(self, text: str) -> bool:
        """`--test`: the name, the name as the runner spells it, or its `file::name`."""
        i = self.identity
        said = (self.name, i.name, f"{i.file}::{i.name}" if i.file else i.name)
        return any(text in s for s in said)


@dataclass(slots=True)
class Attribution:
    tests: list[Test]  # in run order (their start)
    suite: list[Process]  # processes of no test
    of: dict[Process, Test]  # process -> its test

    def test_of(self, p: Process) -> Test | None:
        return self.of.get(p)


def bats_description(name: str) -> str:
    """A bats test function's name decoded back to the test's description.

    bats-preprocess (bats_encode_test_name) prefixes ``test_``, writes a space as
    ``_`` and any other character but letters and digits as ``-`` and its code in hex
    (``%02x``: a character above U+00FF gets more digits, which cannot be told apart;
    they are left encoded).  A function without the prefix (a ``# @test`` comment)
    is its own name.
    """
    if not name.startswith("test_"):
        return name
    body = name[len("test_"):].replace("_", " ")
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), body)


def _int(s: str | None) -> int | None:
    return int(s) if s is not None and s.isdigit() else None


def _may_be_bats(argv: list[str]) -> bool:
    """Whether an argv may run bats-exec-test (False: the common case, decided in C)."""
    return BATS_BOUNDARY in " ".join(argv[:3])


def bats_identity(argv: list[str] | None) -> Identity | None:
    """The test a ``bats-exec-test`` argv runs (None: not one)."""
    if argv is None or not _may_be_bats(argv):
        return None
    at = next((i for i, a in enumerate(argv[:3])
               if a.rsplit("/", 1)[-1] == BATS_BOUNDARY), None)
    if at is None:
        return None
    args = argv[at + 1:]
    while args and (args[0] in _BATS_FLAGS or args[0] in _BATS_VALUED):
        args = args[2:] if args[0] in _BATS_VALUED else args[1:]
    if len(args) < 2:
        return None
    suite = _int(args[2]) if len(args) > 2 else None
    number = _int(args[3]) if len(args) > 3 else None
    return Identity("bats", args[0], args[1], number, suite)


def env_identity(env: dict[str, str] | None) -> Identity | None:
    """The test the runners' variables of one exec name (None: none)."""
    if not env:
        return None
    current = env.get("PYTEST_CURRENT_TEST")
    if current:
        nodeid = _PHASE.sub("", current)
        file, sep, name = nodeid.partition("::")
        return Identity("pytest", file, name) if sep else Identity("pytest", None, nodeid)
    bats = env.get("BATS_TEST_NAME")
    if bats:
        return Identity("bats", env.get("BATS_TEST_FILENAME"), bats,
                        _int(env.get("BATS_TEST_NUMBER")),
                        _int(env.get("BATS_SUITE_TEST_NUMBER")),
                        env.get("BATS_TEST_DESCRIPTION") or None)
    nextest = env.get("NEXTEST_TEST_NAME")
    if nextest:
        return Identity("nextest", env.get("NEXTEST_BINARY_ID"), nextest)
    return None


def _own(p: Process, outside: set[Key]) -> tuple[Identity, bool] | None:
    """The test a process names itself: (identity, is a boundary)."""
    for ex in reversed(p.execs):
        ident = bats_identity(ex.argv)
        if ident is not None:
            return ident, True
    for ex in reversed(p.execs):
        ident = env_identity(ex.env)
        if ident is not None and ident.key not in outside:
            return ident, False
    return None


def attribute(tree: ProcessTree) -> Attribution:
    """Every process of the tree attributed to its test (see the module doc)."""
    if not any(ex.env or (ex.argv is not None and _may_be_bats(ex.argv))
               for p in tree.processes for ex in p.execs):
        return Attribution([], list(tree.processes), {})  # no test names itself: all suite
    outside: set[Key] = set()
    for r in tree.roots:
        if r.execs:
            ident = env_identity(r.execs[0].env)
            if ident is not None:
                outside.add(ident.key)
    of: dict[Process, Test] = {}
    tests: list[Test] = []
    by_key: dict[tuple[Key, int | None], Test] = {}  # variable-named tests, per runner
    for p in _top_down(tree):
        parent_test = of.get(p.parent) if p.parent is not None else None
        own = _own(p, outside)
        test = parent_test
        if own is not None:
            ident, boundary = own
            if boundary:
                test = Test(ident, p, start=p.start, runner=p.parent)
                tests.append(test)
            elif parent_test is None or parent_test.identity.key != ident.key:
                runner = p.parent
                k = (ident.key, id(runner) if runner is not None else None)
                test = by_key.get(k)
                if test is None:
                    test = by_key[k] = Test(ident, None, start=p.start, runner=runner)
                    tests.append(test)
        if test is not None:
            of[p] = test
            test.processes.append(p)
    _ends(tests, tree.end)
    tests.sort(key=lambda t: (t.start, t.identity.suite_number or 0))
    suite = [p for p in tree.processes if p not in of]
    return Attribution(tests, suite, of)


def _top_down(tree: ProcessTree) -> list[Process]:
    """Every process of the tree, each after its parent."""
    out: list[Process] = []
    members = set(tree.processes)
    for r in tree.processes:
        if r.parent is None or r.parent not in members:
            out.extend(q for q in r.walk() if q in members)
    return out


def _ends(tests: list[Test], tree_end: int) -> None:
    """When each test ended, and which of its processes ran on after."""
    by_runner: dict[int, list[Test]] = {}
    for t in tests:
        b = t.boundary
        if b is not None:
            t.end = t.ended_by = b.exit_time
        else:
            by_runner.setdefault(id(t.runner), []).append(t)
    for group in by_runner.values():
        group.sort(key=lambda t: t.start)
        for t, nxt in zip(group, [*group[1:], None], strict=True):
            r = t.runner
            t.ended_by = nxt.start if nxt is not None else (r.exit_time if r else None)
            done = [p.exit_time for p in t.processes
                    if p.exit_time is not None and (t.ended_by is None
                                                    or p.exit_time <= t.ended_by)]
            t.end = max(done, default=t.start) if t.ended_by is not None or done else None
    for t in tests:
        left = [p for p in t.processes
                if p is not t.boundary and t.outlived(p, tree_end) > 0]
        left.sort(key=lambda p: -t.outlived(p, tree_end))
        t.leftovers = left


def select(tree: ProcessTree, text: str) -> tuple[list[Test], set[Process]]:
    """`--test TEXT`: the tests it names (exactly, else every one containing it) and
    their processes with all their descendants."""
    att = attribute(tree)
    exact = [t for t in att.tests if text in (t.name, t.identity.name)]
    chosen = exact or [t for t in att.tests if t.matches(text)]
    keep: set[Process] = set()
    for t in chosen:
        for p in t.processes:
            if p not in keep:
                keep.update(p.walk())
    return chosen, keep


__all__ = [
    "Attribution",
    "Identity",
    "Test",
    "attribute",
    "bats_description",
    "bats_identity",
    "env_identity",
    "select",
]
