"""`stats.answer_ok_ratio`: the share of checked ok probes whose answer passed."""

from datetime import datetime, timezone

import pytest

from monitor.stats import ProbeSample, answer_ok_ratio

T = datetime(2026, 12, 1, tzinfo=timezone.utc)


def s(ok: bool, answer_ok: bool | None) -> ProbeSample:
    return ProbeSample(started_at=T, ok=ok, error_kind=None if ok else "timeout", ttft_s=None,
                       tokens_per_second=None, answer_ok=answer_ok)


@pytest.mark.parametrize(("samples", "ratio"), [
    ([], None),
    ([s(True, None)], None),
    ([s(False, None)], None),
    ([s(True, True)], 1.0),
    ([s(True, False)], 0.0),
    ([s(True, True), s(True, False), s(True, None), s(False, None)], 0.5),
    ([s(True, True)] * 3 + [s(True, False)], 0.75),
])
def test_answer_ok_ratio(samples, ratio):
    assert answer_ok_ratio(samples) == ratio
