"""What the timed probe's result says beyond its timings: the answer verdict, the provider's own
timings and whether the probe paid a model load. Applied by the engine to every measured probe
(`judge`), after the clock has stopped, so none of it moves TTFT or the decode rate.

- `answer_ok` (when the target's `checks` hold "answer"): `monitor.probes.answer.check_answer`
  over the visible answer text of an ok probe; None for a failed probe, a truncated answer that
  is right so far, and when the check is off.
- Provider timings (Ollama's final line): `server_load_s`, `server_prompt_eval_s`,
  `server_eval_s`, `server_eval_tokens`. The server's decode rate is
  `server_eval_tokens / server_eval_s`; ours is `tokens_per_second` (first to last token as
  received, network jitter and batching included); `server_decode_rate` computes the first.
- `cold_start`: the provider reported a model load that the probe paid for: `load_duration`
  above `COLD_START_LOAD_S` (0.5 s), or above `COLD_START_MIN_LOAD_S` (0.1 s) and half the
  probe's TTFT. A warm Ollama reports a load of about a millisecond (its documented example:
  1.3 ms), a load from disk takes seconds for a 1B model, so 0.5 s separates the two with a wide
  margin either way; the share rule catches a small model that loads from the page cache in
  0.2-0.4 s, which is still most of a sub-second TTFT. Without provider timings (every protocol
  but Ollama) `cold_start` stays False.

Pure: no I/O, no clocks.
"""

from __future__ import annotations

import dataclasses

from monitor.probes.answer import check_answer, is_truncated
from monitor.probes.base import ProbeResult, ProbeTarget, ServerTimings
from monitor.probes.prompt import Prompt

__all__ = ["COLD_START_LOAD_S", "COLD_START_MIN_LOAD_S", "is_cold_start", "judge", "server_decode_rate"]

COLD_START_LOAD_S = 0.5
COLD_START_MIN_LOAD_S = 0.1
COLD_START_TTFT_SHARE = 0.5


def is_cold_start(load_s: float | None, ttft_s: float | None) -> bool:
    """The probe paid a model load (see the module docstring for the thresholds)."""
    if load_s is None:
        return False
    if load_s > COLD_START_LOAD_S:
        return True
    return load_s > COLD_START_MIN_LOAD_S and ttft_s is not None and load_s > COLD_START_TTFT_SHARE * ttft_s


def server_decode_rate(result: ProbeResult) -> float | None:
    """The provider's own decode rate (eval_count / eval_duration), tokens per second."""
    if not result.server_eval_tokens or not result.server_eval_s:
        return None
    return result.server_eval_tokens / result.server_eval_s


def judge(result: ProbeResult, target: ProbeTarget, prompt: Prompt, answer_text: str,
          timings: ServerTimings | None) -> ProbeResult:
    """`result` with the answer verdict, provider timings and cold-start flag filled in."""
    changes: dict[str, object] = {}
    if result.ok and "answer" in target.checks:
        verdict = check_answer(answer_text, prompt.count_to, truncated=is_truncated(result.finish_reason))
        changes["answer_ok"] = verdict.ok
    if timings is not None:
        changes.update(
            server_load_s=timings.load_s,
            server_prompt_eval_s=timings.prompt_eval_s,
            server_eval_s=timings.eval_s,
            server_eval_tokens=timings.eval_tokens,
            cold_start=is_cold_start(timings.load_s, result.ttft_s),
        )
    return dataclasses.replace(result, **changes) if changes else result
