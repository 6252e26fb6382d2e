"""The answer canary's checker: did the model count from 1 to N, as the probe's prompt asked?

`check_answer(text, n, truncated=...)` reads the visible answer text of an ok probe (reasoning
is not read) and returns a `Verdict`: `ok` True (right), False (wrong) or None (not judged),
with the reason in words.

Tolerant on form, strict on content. Ignored: capitalisation, whitespace and line breaks,
punctuation and separators of any kind, markdown (`**`, list bullets), hyphens in "twenty-one",
digits instead of words ("1, 2, 3" passes as well as "one, two, three"), a numbered list
("1. one 2. two": a number repeated at once counts once), and a leading or trailing sentence
("Sure! Here is the list from 1 to 23:", "That's all."), since the run 1..N is looked for
anywhere in the text. Wrong: a missing, swapped or repeated-later number inside the run, stopping
before N, or going on past N (the nonce-derived N is the point of the check: a canned or cached
answer counts to some other number).

A truncated answer (the stream ended at max_tokens: finish reason `length`, `max_tokens`,
`MAX_TOKENS`) is not wrong for being short: when what arrived is a correct start of the count
(1..k, k < N; the last number may be cut, so it is not held against the answer), the verdict is
None ("truncated after k of N"), and so is one that holds no number yet (the count had not
begun). A truncated answer that is already wrong is False; one that completed the run before
the cut is True.

Pure: no I/O, no clocks. CPU cost: `bench/answer_check.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_ANSWER_CHARS", "TRUNCATED_REASONS", "Verdict", "check_answer", "is_truncated", "numbers_in"]

# The checker reads at most this much answer text (the probe keeps no more). A right answer to
# the prompt is under 300 characters; a model that rambles past this is judged on its start.
MAX_ANSWER_CHARS = 8192

# Finish reasons that mean "stopped at the token limit" in the protocols' own words: openai and
# cloudflare `length`, anthropic `max_tokens`, gemini `MAX_TOKENS`, ollama `length`.
TRUNCATED_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS", "max_output_tokens"})

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
# Words and digit groups; everything else (punctuation, markdown, hyphens) separates them.
_WORD = re.compile(r"[a-z]+|\d+")
# A truncated answer's count must start among its first numbers (an opening sentence may hold a
# few: "from 1 to 23"); a run from a later 1 is the tail of something else (a count backwards).
_TRUNCATED_START_WITHIN = 4
# "twentyone" (no separator at all, seen from small models) splits into its tens and unit.
_FUSED = re.compile(r"^(" + "|".join(_TENS) + r")(one|two|three|four|five|six|seven|eight|nine)$")


@dataclass(frozen=True)
class Verdict:
    ok: bool | None  # None: not judged (see reason)
    reason: str


def is_truncated(finish_reason: object) -> bool:
    return isinstance(finish_reason, str) and finish_reason in TRUNCATED_REASONS


def numbers_in(text: str) -> list[int]:
    """Every number in `text`, digits or English words, in order; a number repeated at once
    (a numbered list: "1. one") counts once."""
    out: list[int] = []
    pending_tens: int | None = None
    for word in _WORD.findall(text[:MAX_ANSWER_CHARS].lower()):
        value: int | None = None
        fused = _FUSED.match(word)
        if word.isdigit():
            value = int(word) if len(word) <= 6 else None
        elif fused:
            value = _TENS[fused[1]] + _UNITS[fused[2]]
        elif word in _TENS:
            if pending_tens is not None:
                _append(out, pending_tens)
            pending_tens = _TENS[word]
            continue
        elif word in _UNITS:
            unit = _UNITS[word]
            if pending_tens is not None and 1 <= unit <= 9:
                value, pending_tens = pending_tens + unit, None
            else:
                value = unit
        if pending_tens is not None:  # "twenty" followed by something else: twenty alone
            _append(out, pending_tens)
            pending_tens = None
        if value is not None:
            _append(out, value)
    if pending_tens is not None:
        _append(out, pending_tens)
    return out


def _append(out: list[int], value: int) -> None:
    if not out or out[-1] != value:
        out.append(value)


def _run_from(numbers: list[int], start: int) -> int:
    """Length of the run 1, 2, 3, ... that begins at `numbers[start]` (which is 1)."""
    length = 0
    while start + length < len(numbers) and numbers[start + length] == length + 1:
        length += 1
    return length


def check_answer(text: str, n: int, *, truncated: bool = False) -> Verdict:
    """Judge an answer to "count from 1 to `n`" (see the module docstring)."""
    numbers = numbers_in(text)
    starts = [i for i, value in enumerate(numbers) if value == 1]
    best = 0
    for start in starts:
        length = _run_from(numbers, start)
        if length == n:
            return Verdict(True, f"counted 1 to {n}")
        best = max(best, length)
        if (truncated and start < _TRUNCATED_START_WITHIN and start + length >= len(numbers) - 1
                and length < n):
            # The run reaches the end of what arrived (or the number before it, which the cut
            # may have garbled): a correct start of the answer, stopped by the token limit.
            return Verdict(None, f"answer truncated at max_tokens after {length} of {n} numbers")
    if truncated and not numbers:
        return Verdict(None, "answer truncated at max_tokens before any number")
    if best > n:
        return Verdict(False, f"counted past {n} (to {best})")
    if best == 0:
        return Verdict(False, f"no count from 1 to {n} in the answer")
    return Verdict(False, f"count from 1 broke off after {best} of {n} numbers")
