"""Golden tests: every analyze mode on recorded inputs, compared with expected files.

Inputs are tests/golden/inputs/*.ndjson (see tests/golden/make_inputs.py; seed-doc is
the example of the original proctrace's documentation, legacy-later its later
format) and the bundled sample (proctrace_bcc/data/sample.ndjson, a real recording of
proctrace_bcc/data/sample-demo.sh by the BCC backend).  Expected outputs are tests/golden/expected/<case>.<mode>.<ext>.

To regenerate the expected files after an intended change of output, run

    PROCTRACE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py

and review the diff (git diff tests/golden/expected) before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proctrace_bcc.analyze import analyze
from proctrace_bcc.ingest import ingest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
INPUTS = GOLDEN / "inputs"
EXPECTED = GOLDEN / "expected"
UPDATE = os.environ.get("PROCTRACE_UPDATE_GOLDEN") == "1"

MODES = {"sequential": "ndjson", "by-process": "txt", "mermaid": "mmd", "tree": "txt"}
# (case name, input file, -p ROOT_PID)
CASES = [
    ("seed-doc", "seed-doc.ndjson", None),
    ("legacy-later", "legacy-later.ndjson", None),
    ("ours-ci", "ours-ci.ndjson", None),
    ("ours-ci.p1003", "ours-ci.ndjson", 1003),
    ("ours-argv", "ours-argv.ndjson", None),
    ("raw-system", "raw-system.ndjson", None),
    ("raw-system.p3000", "raw-system.ndjson", 3000),
    ("sample", "../../../proctrace_bcc/data/sample.ndjson", None),  # `make demo`'s recording
]


def _compare(got: bytes, expected: Path) -> None:
    if UPDATE:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(got)
        return
    assert expected.exists(), f"{expected} missing: run with PROCTRACE_UPDATE_GOLDEN=1"
    want = expected.read_bytes()
    assert got.decode("utf-8", "backslashreplace") == want.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("case", "name", "root"), CASES, ids=[c[0] for c in CASES])
def test_mode(tmp_path: Path, case: str, name: str, root: int | None, mode: str) -> None:
    out = tmp_path / "out"
    analyze(str(INPUTS / name), out, mode, root)
    _compare(out.read_bytes(), EXPECTED / f"{case}.{mode}.{MODES[mode]}")


@pytest.mark.parametrize(("case", "name", "root"), [
    ("raw-system.p3000", "raw-system.ndjson", 3000),
    ("legacy-later.p4100", "legacy-later.ndjson", 4100),
])
def test_ingest(tmp_path: Path, case: str, name: str, root: int) -> None:
    out = tmp_path / "out.ndjson"
    ingest(str(INPUTS / name), root, out)
    _compare(out.read_bytes(), EXPECTED / f"{case}.ingest.ndjson")


def test_expected_files_all_used() -> None:
    """No stale expected file: each one belongs to a case above."""
    used = {f"{c}.{m}.{e}" for c, _, _ in CASES for m, e in MODES.items()}
    used |= {"raw-system.p3000.ingest.ndjson", "legacy-later.p4100.ingest.ndjson"}
    present = {p.name for p in EXPECTED.iterdir()} if EXPECTED.exists() else set()
    assert present <= used, f"stale expected files: {sorted(present - used)}"
