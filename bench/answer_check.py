"""CPU time of the answer canary per probe: `python -m bench.answer_check`.

What a probe adds for the canary, measured with `time.process_time_ns` (process CPU, not wall):
- `check`: `monitor.probes.answer.check_answer` on the answer text, the one step that runs after
  every ok probe (right answers, wrong ones, a truncated one, and a rambling 8 KB answer, the
  most the probe keeps);
- `prompt`: `monitor.probes.prompt.build_prompt` for each workload profile (100, 1000, 10000
  tokens), which runs before the request is sent (outside the timed part);
- `judge`: `monitor.probes.canary.judge`, the whole post-measurement step on a result (answer
  verdict, provider timings, cold-start flag, one dataclass copy).
Each case runs `--repeat` times after a warm-up; the report gives the mean and p99 in
microseconds. The probe-accuracy benchmark (`bench.probe_accuracy`) is the check that none of
this moves the timing figures: the check runs after the clock stopped. Results go to
bench/results/answer_check.{json,md}. No timed assertion anywhere: a measurement.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from typing import Any, Callable

from bench.results import machine_info, publish
from bench.stats import percentile
from monitor.probes.answer import MAX_ANSWER_CHARS, check_answer
from monitor.probes.base import ProbeResult, ProbeTarget, ServerTimings, TokenCountSource
from monitor.probes.canary import judge
from monitor.probes.prompt import build_prompt

_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()


def _word(i: int) -> str:
    if i < 20:
        return _WORDS[i]
    tens, unit = divmod(i, 10)
    return {2: "twenty", 3: "thirty"}[tens] + (f"-{_WORDS[unit]}" if unit else "")


def _count(n: int) -> str:
    return ", ".join(_word(i) for i in range(1, n + 1))


N = 27
ANSWERS: dict[str, tuple[str, bool]] = {
    "right (words, to 27)": (_count(N), False),
    "right (digits, leading sentence)": ("Sure! Here is the list:\n" + ", ".join(map(str, range(1, N + 1))), False),
    "wrong (stopped short)": (_count(N - 4), False),
    "truncated (right so far)": (_count(15)[:-3], True),
    f"rambling ({MAX_ANSWER_CHARS} chars)": (("I think counting is a lovely exercise. " * 400)[:MAX_ANSWER_CHARS], False),
}


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(min(200, repeat)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.process_time_ns()
        fn()
        samples.append((time.process_time_ns() - start) / 1000.0)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    return {"mean_us": round(sum(samples) / len(samples), 2), "p99_us": round(percentile(samples, 99), 2),
            "n": len(samples)}


def run(repeat: int) -> dict[str, Any]:
    cases: dict[str, dict[str, float]] = {}
    for name, (text, truncated) in ANSWERS.items():
        cases[f"check: {name}"] = _summary(_time(lambda t=text, c=truncated: check_answer(t, N, truncated=c), repeat))
    for profile in (100, 1000, 10000):
        reps = repeat if profile < 10000 else max(50, repeat // 20)
        cases[f"prompt: build, {profile}-token profile"] = _summary(
            _time(lambda p=profile: build_prompt("0123456789ab", p), reps))
    prompt = build_prompt("0123456789ab")
    result = ProbeResult(ok=True, error_kind=None, error=None, http_status=200,
                         started_at=datetime.now(timezone.utc), ttft_s=0.3, connect_s=0.01, total_s=1.2,
                         output_tokens=70, token_count_source=TokenCountSource.USAGE, tokens_per_second=60.0,
                         finish_reason="stop")
    target = ProbeTarget(protocol="ollama", base_url="http://127.0.0.1:11434", model="m")
    timings = ServerTimings(load_s=0.001, prompt_eval_s=0.05, eval_s=1.1, eval_tokens=70)
    answer = _count(prompt.count_to)
    cases["judge: whole post-measurement step (right answer, Ollama timings)"] = _summary(
        _time(lambda: judge(result, target, prompt, answer, timings), repeat))
    return {"command": f"python -m bench.answer_check --repeat {repeat}", "machine": machine_info(), "cases": cases}


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Answer canary: CPU time per probe",
        "",
        f"Command: `{report['command']}`  ",
        f"Run at {report['machine']['at']}; load average before {report['machine']['load_average_1_5_15']}, "
        f"after {report['machine'].get('load_average_after')}; {report['machine']['cpus']} CPUs; "
        "process CPU time (`time.process_time_ns`).",
        "",
        "| case | mean (µs) | p99 (µs) | n |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["cases"].items():
        lines.append(f"| {name} | {row['mean_us']:.2f} | {row['p99_us']:.2f} | {row['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5000)
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    publish(run(args.repeat), render, "answer_check", args.results_dir)


if __name__ == "__main__":
    main()
