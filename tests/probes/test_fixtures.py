"""Checks on the transcript folder (tests/fixtures/protocols): the copied recordings are
byte-for-byte what the README's hashes say, every synthetic transcript is labelled as such, every
transcript decodes with its protocol alike at every read boundary, and every one is read by some
test. The replay helpers are in `tests/probes/support.py`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from monitor.probes.registry import PROTOCOLS
from tests.probes.support import FIXTURES, read_fixture, replay_bytes

TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- folder checks

def _readme() -> str:
    return (FIXTURES / "README.md").read_text()


def _table_rows(section_title: str) -> list[list[str]]:
    section = _readme().split(section_title, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("file", "") and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def _transcripts() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".sse", ".ndjson"))


def test_copied_recordings_match_their_recorded_hashes():
    rows = _table_rows("## Recorded / documented")
    assert len(rows) == 8
    for name, _protocol, _origin, sha256 in rows:
        assert hashlib.sha256(read_fixture(name)).hexdigest() == sha256, name


def test_every_transcript_is_listed_and_synthetic_ones_are_labelled():
    recorded = {row[0] for row in _table_rows("## Recorded / documented")}
    synthetic = {row[0] for row in _table_rows("## Synthetic")}
    names = {p.name for p in _transcripts()}
    assert names == recorded | synthetic
    assert all(name.startswith("synthetic_") for name in synthetic)
    assert not any(name.startswith("synthetic_") for name in recorded)
    for name in synthetic:
        if name.endswith(".sse"):
            first_line = re.split(rb"\r\n|\r|\n", read_fixture(name), maxsplit=1)[0]
            assert first_line.startswith(b": synthetic transcript"), name


@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.name)
def test_every_transcript_is_read_by_some_test(path: Path):
    # A test "reads" a transcript when it names it in a string literal (the generic decode test
    # below globs the folder and names none, so it does not count; the conformance kits do).
    sources = [p.read_text() for p in TESTS.glob("*.py")]
    assert any(f'"{path.name}"' in source for source in sources), (
        f"no test in tests/probes reads {path.name}"
    )


@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.name)
def test_every_transcript_decodes_with_its_protocol(path: Path):
    """Whatever a protocol's own tests assert, its transcripts must decode (no StreamDataError)
    identically across read boundaries, and yield something."""
    rows = {row[0]: row[1] for row in _table_rows("## Recorded / documented") + _table_rows("## Synthetic")}
    replay = replay_bytes(PROTOCOLS[rows[path.name]], path.read_bytes())
    assert replay.deltas, f"{path.name} produced no deltas"
