"""What one liveness answer means, given the endpoint's liveness history: pure, no I/O, no clocks.

`classify(answer, history)` returns a `Verdict`: the metric outcome, whether the liveness request
is up, what the checker must do (`Action`) and the endpoint's new history. The I/O loop that sends
the requests and acts on verdicts is `monitor.liveness`; docs/liveness.md has the rules in prose:

- 2xx: up. After a hard failure it is a recovery (the checker asks for a confirmation probe, so
  an endpoint declared down resolves at once instead of at its next scheduled probe).
- DNS, connect, TLS or timeout: a hard failure, whatever came before.
- 5xx, 401, 403, 404, 410 where the endpoint used to answer 2xx: a hard failure.
- 404, 405, 410, 501 from the start (no 2xx yet): the provider does not offer the request, so
  liveness goes off for the endpoint; it is not down.
- 401/403 from the start: the key may probe but not list (a scoped key); off after
  `refused_limit` answers in a row.
- 429: back off (the checker doubles the wait per 429 in a row); off after `rate_limit_limit`.
- Anything else (3xx, other 4xx, 5xx with no 2xx yet): says nothing, nothing happens.

Only the first hard failure after an up answer asks for a confirmation: while the endpoint keeps
failing, the confirmation probes (monitor.confirm) already decide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

# Transport failures (no HTTP answer at all), the probe's own error kinds.
TRANSPORT_FAILURES: tuple[str, ...] = ("dns_error", "connect_error", "tls_error", "timeout")

OUTCOME_OK = "ok"
OUTCOME_NOT_OFFERED = "not_offered"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_HTTP_5XX = "http_5xx"
OUTCOME_AUTH = "auth_error"
OUTCOME_NOT_FOUND = "not_found"
OUTCOME_OTHER = "other"
# The closed set of `llm_liveness_checks_total{outcome}` values.
OUTCOMES: tuple[str, ...] = (
    OUTCOME_OK, OUTCOME_NOT_OFFERED, OUTCOME_RATE_LIMITED, *TRANSPORT_FAILURES,
    OUTCOME_HTTP_5XX, OUTCOME_AUTH, OUTCOME_NOT_FOUND, OUTCOME_OTHER,
)

NOT_OFFERED_STATUSES = frozenset({404, 405, 410, 501})
GONE_STATUSES = frozenset({404, 410})  # after 2xx: the listing vanished, a hard failure
AUTH_STATUSES = frozenset({401, 403})

RATE_LIMIT_LIMIT = 3
REFUSED_LIMIT = 3


class Action(enum.StrEnum):
    NONE = "none"
    CONFIRM = "confirm"  # hard failure: start a confirmation probe now
    RECOVERED = "recovered"  # up again after a hard failure: a confirmation probe may resolve
    BACK_OFF = "back_off"  # wait longer before the next check
    DISABLE = "disable"  # liveness off for this endpoint (not offered, rate-limited, refused)


@dataclass(frozen=True)
class LivenessAnswer:
    """What one check got: an HTTP status, or a transport failure kind (TRANSPORT_FAILURES)."""

    status: int | None = None
    failure: str | None = None

    def __post_init__(self) -> None:
        if (self.status is None) == (self.failure is None):
            raise ValueError("a liveness answer has exactly one of status and failure")
        if self.failure is not None and self.failure not in TRANSPORT_FAILURES:
            raise ValueError(f"unknown liveness failure {self.failure!r}")


@dataclass(frozen=True)
class LivenessHistory:
    answered_2xx: bool = False  # some check of this endpoint got a 2xx (since the process started)
    failing: bool = False  # a hard failure since the latest 2xx
    rate_limited_in_row: int = 0
    refused_in_row: int = 0  # 401/403 before any 2xx


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of OUTCOMES
    up: bool | None  # None: this answer says nothing about the endpoint's health
    action: Action
    reason: str  # for the state-change log line: no provider text, no URL
    history: LivenessHistory


def classify(
    answer: LivenessAnswer, history: LivenessHistory, *,
    rate_limit_limit: int = RATE_LIMIT_LIMIT, refused_limit: int = REFUSED_LIMIT,
) -> Verdict:
    calm = replace(history, rate_limited_in_row=0)

    def hard(outcome: str, reason: str) -> Verdict:
        action = Action.NONE if history.failing else Action.CONFIRM
        return Verdict(outcome, False, action, reason, replace(calm, failing=True, refused_in_row=0))

    if answer.failure is not None:
        return hard(answer.failure, answer.failure)
    status = answer.status
    assert status is not None
    if 200 <= status < 300:
        action = Action.RECOVERED if history.failing else Action.NONE
        return Verdict(OUTCOME_OK, True, action, f"HTTP {status}",
                       replace(calm, answered_2xx=True, failing=False, refused_in_row=0))
    if status == 429:
        count = history.rate_limited_in_row + 1
        after = replace(history, rate_limited_in_row=count)
        if count >= rate_limit_limit:
            return Verdict(OUTCOME_RATE_LIMITED, None, Action.DISABLE,
                           f"rate-limited (HTTP 429, {count} in a row)", after)
        return Verdict(OUTCOME_RATE_LIMITED, None, Action.BACK_OFF, "HTTP 429", after)
    if history.answered_2xx:
        if status >= 500:
            return hard(OUTCOME_HTTP_5XX, f"HTTP {status} after 2xx")
        if status in AUTH_STATUSES:
            return hard(OUTCOME_AUTH, f"HTTP {status} after 2xx")
        if status in GONE_STATUSES:
            return hard(OUTCOME_NOT_FOUND, f"HTTP {status} after 2xx")
        return Verdict(OUTCOME_OTHER, None, Action.NONE, f"HTTP {status}", calm)
    # No 2xx yet: nothing to compare with.
    if status in NOT_OFFERED_STATUSES:
        return Verdict(OUTCOME_NOT_OFFERED, None, Action.DISABLE, f"not offered (HTTP {status})", calm)
    if status in AUTH_STATUSES:
        count = history.refused_in_row + 1
        after = replace(calm, refused_in_row=count)
        if count >= refused_limit:
            return Verdict(OUTCOME_AUTH, None, Action.DISABLE,
                           f"refused (HTTP {status}, {count} in a row, never 2xx)", after)
        return Verdict(OUTCOME_AUTH, None, Action.NONE, f"HTTP {status}", after)
    if status >= 500:
        return Verdict(OUTCOME_HTTP_5XX, False, Action.NONE, f"HTTP {status} (never 2xx yet)", calm)
    return Verdict(OUTCOME_OTHER, None, Action.NONE, f"HTTP {status}", calm)


def next_wait_s(interval_s: float, history: LivenessHistory, *, max_s: float) -> float:
    """The wait before the next check: the interval, doubled per 429 in a row, at most `max_s`."""
    return min(max(interval_s, interval_s * 2 ** history.rate_limited_in_row), max(max_s, interval_s))
