"""The answer checker alone: honest formats pass, wrong counts fail, truncated answers are not
judged unless already wrong; and what the recorded transcripts (answers to other prompts) show."""

from __future__ import annotations

import pytest

from monitor.probes.answer import check_answer, is_truncated, numbers_in
from tests.canary.providers import count_words, word
from tests.probes.support import replay_fixture
from monitor.probes.registry import PROTOCOLS

N = 23


def words(n: int, sep: str = ", ") -> str:
    return sep.join(word(i) for i in range(1, n + 1))


HONEST = {
    "words": words(N),
    "capitalised": words(N).title(),
    "upper": words(N).upper(),
    "digits": ", ".join(str(i) for i in range(1, N + 1)),
    "newlines": words(N, "\n"),
    "no separators": words(N, " "),
    "hyphen as space": words(N).replace("-", " "),
    "fused tens": words(N).replace("-", ""),
    "leading sentence": f"Sure! Here is the list from 1 to {N}:\n\n" + words(N) + ".",
    "leading sentence with one": "Here's one way to do it: " + words(N),
    "trailing sentence": words(N) + "\n\nThat's all the numbers up to twenty-three.",
    "numbered list": "\n".join(f"{i}. {word(i).capitalize()}" for i in range(1, N + 1)),
    "markdown bullets": "\n".join(f"- **{word(i)}**" for i in range(1, N + 1)),
    "mixed digits and words": ", ".join(str(i) if i % 2 else word(i) for i in range(1, N + 1)),
    "semicolons and a period": words(N, "; ") + ".",
    "non-breaking and tabs": words(N, ",\u00a0\t"),
}

WRONG = {
    "stopped short": words(N - 1),
    "went on past N": words(N + 2),
    "the old fixed prompt's answer (to thirty)": words(30),
    "skipped a number": words(N).replace("seven, ", ""),
    "swapped two": words(N).replace("three, four", "four, three"),
    "repeated a number later": words(10) + ", five, " + ", ".join(word(i) for i in range(11, N + 1)),
    "counted backwards": ", ".join(word(i) for i in range(N, 0, -1)),
    "refusal": "I'm sorry, but I can't help with that.",
    "empty": "",
    "a different task": "The capital of France is Paris.",
}


@pytest.mark.parametrize("text", HONEST.values(), ids=HONEST.keys())
def test_honest_formats_pass(text):
    verdict = check_answer(text, N)
    assert verdict.ok is True, verdict.reason


@pytest.mark.parametrize("text", WRONG.values(), ids=WRONG.keys())
def test_wrong_answers_fail(text):
    verdict = check_answer(text, N)
    assert verdict.ok is False, verdict.reason


@pytest.mark.parametrize("text", WRONG.values(), ids=WRONG.keys())
def test_a_wrong_answer_cut_at_max_tokens_is_still_wrong_unless_it_is_a_right_start(text):
    verdict = check_answer(text, N, truncated=True)
    if text == words(N - 1):
        assert verdict.ok is None  # a right start
    elif not numbers_in(text):
        assert verdict.ok is None and "before any number" in verdict.reason  # the count had not begun
    else:
        assert verdict.ok is False, verdict.reason


@pytest.mark.parametrize("cut", [1, 5, 40, 77, len(words(N)) - 3])
def test_a_right_answer_cut_anywhere_is_not_judged(cut):
    text = words(N)[:cut]
    verdict = check_answer(text, N, truncated=True)
    assert verdict.ok is None, (text, verdict)
    assert "truncated" in verdict.reason
    # the same text without the truncation flag is a count that stopped short: wrong
    assert check_answer(text, N).ok is False


def test_a_cut_inside_a_number_is_not_held_against_the_answer():
    # "…, sixteen, seventeen, 1" — the cut left the "1" of "18"
    text = ", ".join(str(i) for i in range(1, 18)) + ", 1"
    assert check_answer(text, N, truncated=True).ok is None
    assert check_answer("one, two, twenty", N, truncated=True).ok is None  # "twenty-…" cut


def test_a_truncated_answer_that_went_wrong_before_the_cut_is_wrong():
    assert check_answer("one, two, four, five, six", N, truncated=True).ok is False


def test_reasons_say_what_happened():
    assert check_answer(words(N - 3), N).reason == f"count from 1 broke off after {N - 3} of {N} numbers"
    assert check_answer(words(N + 1), N).reason == f"counted past {N} (to {N + 1})"
    assert check_answer("hello", N).reason == f"no count from 1 to {N} in the answer"


def test_number_reading():
    assert numbers_in("Twenty-One, twenty two; thirty. 7, 1000000") == [21, 22, 30, 7]
    assert numbers_in("1. One\n2. Two") == [1, 2]
    assert numbers_in("twenty") == [20]


@pytest.mark.parametrize("reason, truncated", [
    ("length", True), ("max_tokens", True), ("MAX_TOKENS", True), ("stop", False), ("end_turn", False),
    ("STOP", False), (None, False), ({"odd": 1}, False),
])
def test_truncation_reasons(reason, truncated):
    assert is_truncated(reason) is truncated


def test_the_answer_as_streamed_in_chunks_is_the_answer():
    assert check_answer("".join(count_words(N)), N).ok is True


# The recorded transcripts answer other prompts ("Why is the sky blue?", "Hello", the capital of
# Wyoming...), so they cannot measure a false-failure rate on our prompt: what they can show is
# that the checker reads real provider text without error and does not pass prose that is not a
# count (a false pass), whatever N is asked.
RECORDED = {
    "anthropic": "anthropic_basic_stream.sse",
    "cloudflare": "cloudflare_workers_ai_native.sse",
    "gemini": "gemini_basic_stream.sse",
    "ollama": "ollama_chat_stream.ndjson",
    "openai": "openai_chat_stream_len1.sse",
}


@pytest.mark.parametrize("protocol, fixture", RECORDED.items())
def test_recorded_answers_to_other_prompts_never_pass(protocol, fixture):
    replay = replay_fixture(PROTOCOLS[protocol], fixture)
    assert replay.content  # real text to judge
    for n in range(20, 31):
        assert check_answer(replay.content, n).ok is False


def honest_formats(n: int) -> list[str]:
    w = lambda sep=", ": sep.join(word(i) for i in range(1, n + 1))  # noqa: E731
    return [
        w(), w().title(), w().upper(), ", ".join(map(str, range(1, n + 1))), w("\n"), w(" "),
        w().replace("-", " "), w().replace("-", ""), f"Sure! Here is the list from 1 to {n}:\n\n" + w() + ".",
        "Here's one way: " + w(), w() + "\n\nThat's all.",
        "\n".join(f"{i}. {word(i).capitalize()}" for i in range(1, n + 1)),
        "\n".join(f"- **{word(i)}**" for i in range(1, n + 1)),
        ", ".join(str(i) if i % 2 else word(i) for i in range(1, n + 1)), w("; ") + ".", w(",\u00a0\t"),
    ]


def test_false_failure_rate_is_zero_over_every_format_n_and_cut():
    """The measurement behind the report's false-failure figure: 16 honest formats x every N the
    prompt can ask (20..30) pass whole, and cut at every 3rd character with a max_tokens finish
    none is judged wrong (each is None, or True once the count completed before the cut)."""
    judged_wrong, cuts = [], 0
    for n in range(20, 31):
        for text in honest_formats(n):
            assert check_answer(text, n).ok is True, (n, text)
            for cut in range(1, len(text), 3):
                cuts += 1
                if check_answer(text[:cut], n, truncated=True).ok is False:
                    judged_wrong.append((n, text[:cut]))
    assert cuts > 10_000 and judged_wrong == []
