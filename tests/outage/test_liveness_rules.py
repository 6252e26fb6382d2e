"""Table tests of the pure liveness rules (`monitor.liveness_rules.classify`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monitor.liveness_rules import (
    Action,
    LivenessAnswer,
    LivenessHistory,
    OUTCOMES,
    classify,
    next_wait_s,
)

FRESH = LivenessHistory()
UP = LivenessHistory(answered_2xx=True)
FAILING = LivenessHistory(answered_2xx=True, failing=True)
FAILING_NEVER_UP = LivenessHistory(failing=True)


def status(code: int) -> LivenessAnswer:
    return LivenessAnswer(status=code)


def failure(kind: str) -> LivenessAnswer:
    return LivenessAnswer(failure=kind)


@pytest.mark.parametrize(
    "answer, history, outcome, up, action",
    [
        # 2xx
        (status(200), FRESH, "ok", True, Action.NONE),
        (status(204), UP, "ok", True, Action.NONE),
        (status(200), FAILING, "ok", True, Action.RECOVERED),
        (status(200), FAILING_NEVER_UP, "ok", True, Action.RECOVERED),
        # transport failures are hard whatever came before; only the first asks for a confirmation
        (failure("dns_error"), FRESH, "dns_error", False, Action.CONFIRM),
        (failure("connect_error"), UP, "connect_error", False, Action.CONFIRM),
        (failure("tls_error"), UP, "tls_error", False, Action.CONFIRM),
        (failure("timeout"), UP, "timeout", False, Action.CONFIRM),
        (failure("timeout"), FAILING, "timeout", False, Action.NONE),
        # 5xx, 401/403, 404/410 where it used to answer 2xx
        (status(500), UP, "http_5xx", False, Action.CONFIRM),
        (status(503), UP, "http_5xx", False, Action.CONFIRM),
        (status(502), FAILING, "http_5xx", False, Action.NONE),
        (status(401), UP, "auth_error", False, Action.CONFIRM),
        (status(403), UP, "auth_error", False, Action.CONFIRM),
        (status(404), UP, "not_found", False, Action.CONFIRM),
        (status(410), UP, "not_found", False, Action.CONFIRM),
        # ... but not from the start
        (status(500), FRESH, "http_5xx", False, Action.NONE),
        (status(404), FRESH, "not_offered", None, Action.DISABLE),
        (status(405), FRESH, "not_offered", None, Action.DISABLE),
        (status(501), FRESH, "not_offered", None, Action.DISABLE),
        (status(401), FRESH, "auth_error", None, Action.NONE),
        # 429: back off, whatever came before
        (status(429), FRESH, "rate_limited", None, Action.BACK_OFF),
        (status(429), UP, "rate_limited", None, Action.BACK_OFF),
        # anything else says nothing
        (status(301), FRESH, "other", None, Action.NONE),
        (status(400), UP, "other", None, Action.NONE),
        (status(422), FRESH, "other", None, Action.NONE),
    ],
)
def test_one_answer(answer, history, outcome, up, action):
    verdict = classify(answer, history)
    assert (verdict.outcome, verdict.up, verdict.action) == (outcome, up, action)
    assert verdict.outcome in OUTCOMES


def run(answers, history=FRESH, **kw):
    actions = []
    for answer in answers:
        verdict = classify(answer, history, **kw)
        actions.append(verdict.action)
        history = verdict.history
    return actions, history


def test_an_outage_asks_for_one_confirmation_then_one_recovery():
    actions, history = run([status(200), failure("connect_error"), failure("connect_error"),
                            status(503), status(200), status(200)])
    assert actions == [Action.NONE, Action.CONFIRM, Action.NONE, Action.NONE, Action.RECOVERED, Action.NONE]
    assert history == UP


def test_a_second_outage_asks_again():
    actions, _ = run([status(200), failure("timeout"), status(200), status(500)])
    assert actions == [Action.NONE, Action.CONFIRM, Action.RECOVERED, Action.CONFIRM]


def test_429s_in_a_row_back_off_then_turn_liveness_off():
    actions, history = run([status(200), status(429), status(429), status(429)], rate_limit_limit=3)
    assert actions == [Action.NONE, Action.BACK_OFF, Action.BACK_OFF, Action.DISABLE]
    assert history.rate_limited_in_row == 3


def test_an_answer_between_429s_resets_the_back_off():
    actions, history = run([status(429), status(429), status(200), status(429)], rate_limit_limit=3)
    assert actions == [Action.BACK_OFF, Action.BACK_OFF, Action.NONE, Action.BACK_OFF]
    assert history.rate_limited_in_row == 1


def test_401_from_the_start_turns_liveness_off_after_the_limit():
    actions, _ = run([status(401), status(403), status(401)], refused_limit=3)
    assert actions == [Action.NONE, Action.NONE, Action.DISABLE]


def test_401_after_a_2xx_is_a_hard_failure_not_a_refusal():
    actions, _ = run([status(401), status(200), status(401)], refused_limit=2)
    assert actions == [Action.NONE, Action.NONE, Action.CONFIRM]


@pytest.mark.parametrize(
    "in_row, expected",
    [(0, 60.0), (1, 120.0), (2, 240.0), (5, 1800.0)],
)
def test_back_off_doubles_the_wait_up_to_the_cap(in_row, expected):
    assert next_wait_s(60.0, LivenessHistory(rate_limited_in_row=in_row), max_s=1800.0) == expected


def test_an_answer_is_a_status_or_a_failure():
    with pytest.raises(ValueError):
        LivenessAnswer()
    with pytest.raises(ValueError):
        LivenessAnswer(status=200, failure="timeout")
    with pytest.raises(ValueError, match="unknown liveness failure"):
        LivenessAnswer(failure="http_error")


def test_the_rules_module_is_pure():
    tree = ast.parse((Path(__file__).parents[2] / "monitor" / "liveness_rules.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "enum", "dataclasses"}

