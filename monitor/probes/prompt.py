"""The probe's prompt: the answer-canary task, padded to a workload profile, nonce first.

What a probe sends (`build_prompt(nonce, input_tokens)`):

    [probe <nonce>]
    <filler, sized to the profile>           (a delimited block the model is told to ignore)
    Count from 1 to <N> in words, separated by commas (one, two, three, ...). Reply with the list only.

- The nonce (12 hex digits, new for every probe) comes FIRST: provider prompt caches match on
  prefixes, so a nonce anywhere later would let everything before it be served from cache and
  flatter TTFT (most of all for the 10,000-token profile).
- N (`count_to(nonce)`) is derived from the nonce, 20 to 30, so a canned or cached answer does not
  pass the answer check (`monitor.probes.answer`), while the output stays close to what the probe
  asked before the canary existed (1 to 30 in words, about 80 tokens; now 45 to 80).
- The filler brings the prompt to about `input_tokens` tokens as the provider counts them. We have
  no tokenizer for every model, so the size is an estimate (`estimate_tokens`): the filler is made
  of short common English words that every BPE vocabulary of the catalog's models holds as one
  token each (with their leading space), and `CHAT_TEMPLATE_TOKENS` stands for what the provider's
  chat template adds around the message. The estimate is then checked against the provider's own
  `usage.prompt_tokens` where it reports one (`size_mismatch`): off by more than 20 % is flagged.
- No number word and no digit appears in the filler, so it cannot be mistaken for the answer.

Pure: no I/O, no clocks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "CHAT_TEMPLATE_TOKENS",
    "COUNT_MAX",
    "COUNT_MIN",
    "MISMATCH_RATIO",
    "Prompt",
    "build_prompt",
    "count_to",
    "estimate_tokens",
    "is_size_mismatch",
    "size_mismatch",
]

COUNT_MIN = 20
COUNT_MAX = 30
# Tokens a chat template adds around one user message (role headers, BOS/EOS, and for Llama 3.x
# a short system block): about 7 for OpenAI models, about 20 for Llama 3.2 under Ollama (its
# documented example: a 6-token question reported as prompt_eval_count 26). The middle is used.
CHAT_TEMPLATE_TOKENS = 12
# What a 12-hex-digit nonce costs in a BPE vocabulary (mixed letter/digit runs split into
# pieces of about 2 characters). A constant, so the filler, and so the prompt's size, does not
# vary with the nonce drawn.
NONCE_TOKENS = 6
# A reported prompt size further than this share from the profile is flagged.
MISMATCH_RATIO = 0.20

_INSTRUCTION = "Count from 1 to {n} in words, separated by commas (one, two, three, ...). Reply with the list only."
_FILLER_INTRO = "The text between the markers only sets the prompt size; ignore it."
_FILLER_OPEN = "<<<"
_FILLER_CLOSE = ">>>"
# Common short words: one token each (with the leading space) in the GPT, Llama, Gemma, Qwen and
# Mistral vocabularies. No number words, nothing that reads as an instruction.
_FILLER_WORDS = (
    "the", "and", "of", "to", "in", "is", "that", "for", "it", "as", "was", "with", "on", "be",
    "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which",
    "you", "were", "her", "all", "she", "there", "would", "their", "we", "him", "been", "has",
    "when", "who", "will", "more", "no", "if", "out", "so", "said", "what", "up", "its", "about",
    "into", "than", "them", "can", "only", "other", "new", "some", "could", "time", "these",
    "may", "then", "do", "any", "my", "now", "such", "like", "our", "over", "man", "me",
    "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back",
    "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just",
    "those", "people", "how", "too", "little", "state", "good", "very", "make", "world", "still",
    "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being",
    "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great",
    "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take",
)
_SENTENCE_WORDS = 12  # a period every 12 words: text that reads like prose to a tokenizer

_TOKEN = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


@dataclass(frozen=True)
class Prompt:
    """One probe's prompt: the text sent, the number it asks to count to, and its size."""

    text: str
    count_to: int
    input_tokens: int  # the workload profile asked for
    estimated_tokens: int  # our estimate of the provider's count, template included


def count_to(nonce: str) -> int:
    """The N of "count from 1 to N" for this nonce (COUNT_MIN ..= COUNT_MAX)."""
    try:
        value = int(nonce, 16)
    except ValueError:
        value = sum(nonce.encode())
    return COUNT_MIN + value % (COUNT_MAX - COUNT_MIN + 1)


def estimate_tokens(text: str) -> int:
    """Tokens a BPE tokenizer gives `text`, roughly: a word or a punctuation mark is one, digits
    one each (Llama 3 and GPT-4o split numbers into groups of up to 3; one each errs high), and a
    long letter run (a hex nonce) one per 3 letters."""
    count = 0
    for token in _TOKEN.findall(text):
        count += max(1, (len(token) + 2) // 3) if len(token) > 8 else 1
    return count


@functools.lru_cache(maxsize=64)
def _filler(words: int) -> tuple[str, int]:
    """The filler of `words` words and its estimated tokens (built once per size: the 10,000-token
    profile's costs milliseconds of CPU)."""
    return (text := _filler_text(words)), estimate_tokens(text)


def _filler_text(words: int) -> str:
    parts: list[str] = []
    for i in range(words):
        word = _FILLER_WORDS[(i * 7) % len(_FILLER_WORDS)]  # 7 is coprime with the list's length: every word in turn
        if i % _SENTENCE_WORDS == 0:
            word = word.capitalize()
        parts.append(word)
        if i % _SENTENCE_WORDS == _SENTENCE_WORDS - 1:
            parts[-1] += "."
    text = " ".join(parts)
    return text if text.endswith(".") else text + "."


def build_prompt(nonce: str, input_tokens: int = 100) -> Prompt:
    """The prompt for this probe, padded to about `input_tokens` tokens (see the module doc)."""
    n = count_to(nonce)
    head = f"[probe {nonce}]"
    instruction = _INSTRUCTION.format(n=n)
    bare = f"{head}\n{instruction}"
    base = _estimate(bare, nonce)
    frame = estimate_tokens(f"{_FILLER_INTRO}\n{_FILLER_OPEN}\n\n{_FILLER_CLOSE}")
    room = input_tokens - base - frame
    if room <= 0:
        return Prompt(bare, n, input_tokens, base)
    # Each filler word is one token, and every _SENTENCE_WORDS-th carries a period (one more).
    words = max(1, round(room * _SENTENCE_WORDS / (_SENTENCE_WORDS + 1)))
    filler, filler_tokens = _filler(words)
    text = f"{head}\n{_FILLER_INTRO}\n{_FILLER_OPEN}\n{filler}\n{_FILLER_CLOSE}\n{instruction}"
    return Prompt(text, n, input_tokens, base + frame + filler_tokens)


def _estimate(text: str, nonce: str) -> int:
    """The provider's count for a prompt holding `nonce` once: the nonce at its constant cost."""
    return estimate_tokens(text.replace(nonce, "", 1)) + NONCE_TOKENS + CHAT_TEMPLATE_TOKENS


def size_mismatch(input_tokens: int, prompt_tokens: int | None) -> float | None:
    """|reported - profile| / profile, or None when the provider reported no prompt size."""
    if prompt_tokens is None or input_tokens <= 0:
        return None
    return abs(prompt_tokens - input_tokens) / input_tokens


def is_size_mismatch(input_tokens: int, prompt_tokens: int | None) -> bool:
    """The reported prompt size is more than MISMATCH_RATIO away from the profile."""
    ratio = size_mismatch(input_tokens, prompt_tokens)
    return ratio is not None and ratio > MISMATCH_RATIO
