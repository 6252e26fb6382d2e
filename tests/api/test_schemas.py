"""Response models: timestamps always leave as ISO 8601 UTC with 'Z', whatever the source gave."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from api.schemas import ModelLiveOut, ProbeResultOut
from tests.api.conftest import LLAMA_LIVE, probe_result


@pytest.mark.parametrize(
    "started_at",
    [
        datetime(2026, 3, 1, 12, 0, 0),  # naive, as SQLite drivers return it: read as UTC
        datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc),
        datetime(2026, 3, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_probe_timestamps_are_utc_with_z(started_at):
    out = ProbeResultOut.of(replace(probe_result(0), started_at=started_at))
    assert json.loads(out.model_dump_json())["started_at"] == "2026-03-01T12:00:00Z"


def test_live_timestamps_are_utc_with_z_and_keep_microseconds():
    local = datetime(2026, 3, 1, 7, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    live = replace(LLAMA_LIVE, updated_at=local)
    assert json.loads(ModelLiveOut.of(live).model_dump_json())["updated_at"] == "2026-03-01T12:00:00.123456Z"


def test_unknown_error_kind_is_rejected_not_passed_through():
    bad = replace(LLAMA_LIVE, endpoints=(replace(LLAMA_LIVE.endpoints[0], last_error_kind="oops"),))
    with pytest.raises(ValueError):
        ModelLiveOut.of(bad)
