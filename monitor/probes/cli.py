"""The `llm-monitor probe` subcommand: one measured probe, printed as ONE JSON object with
`--json` (one human-readable line without it).

`llm_monitor.cli` owns the top-level parser and calls `add_arguments` / `run`. Exit status: 0 when the
probe ran, whatever its outcome (the outcome is in the JSON); argparse's 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Mapping

from monitor.catalog.diagnostics import format_loc
from monitor.catalog.resolve import ENV_NAME, resolve_target
from monitor.catalog.schema import (
    MAX_TOKENS_MAX,
    MAX_TOKENS_MIN,
    TIMEOUT_MAX_S,
    TIMEOUT_MIN_S,
    bounded_duration,
    option_problems,
)
from monitor.probes.base import ProbeResult, ProbeTarget
from monitor.probes.registry import PROTOCOLS
from monitor.probes.urls import http_url_problem


def _max_tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not MAX_TOKENS_MIN <= value <= MAX_TOKENS_MAX:
        raise argparse.ArgumentTypeError(f"must be from {MAX_TOKENS_MIN} to {MAX_TOKENS_MAX}: {text!r}")
    return value


def _timeout(text: str) -> float:
    # The catalog's duration syntax and bounds: "20", "20s", "1m30s".
    try:
        return bounded_duration(text, TIMEOUT_MIN_S, TIMEOUT_MAX_S)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {text!r}") from None


def _base_url(text: str) -> str:
    problem = http_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}: {text!r}")
    return text


def _env_name(text: str) -> str:
    if not ENV_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not an environment variable name (upper-case letters, digits and _): {text!r}")
    return text


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE: {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, choices=tuple(PROTOCOLS), help="wire protocol")
    parser.add_argument("--base-url", required=True, type=_base_url,
                        help="what the provider's SDK calls base URL, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--model", required=True, help="model id as the provider names it")
    parser.add_argument("--api-key-env", type=_env_name, metavar="VAR",
                        help="environment variable holding the API key (or VAR_FILE naming a file)")
    parser.add_argument("--max-tokens", type=_max_tokens, default=128, metavar="N",
                        help=f"{MAX_TOKENS_MIN} to {MAX_TOKENS_MAX}")
    parser.add_argument("--timeout", type=_timeout, default=60.0, metavar="S",
                        help="bound on the whole measured request, in seconds (1 to 600)")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="protocol option, e.g. max_tokens_field=max_completion_tokens (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def options_error(args: argparse.Namespace) -> str | None:
    """Why the `--option` flags do not fit the protocol (its options model), or None."""
    problems = option_problems(args.protocol, dict(args.option))
    return "; ".join(f"--option {format_loc(loc)}: {message}" for loc, message in problems) or None


def target_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ProbeTarget:
    """The flags resolved exactly as a catalog endpoint is (`monitor.catalog.resolve`)."""
    return resolve_target(
        protocol=args.protocol,
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        options=dict(args.option),
        environ=environ,
    )


async def probe_once(target: ProbeTarget) -> ProbeResult:
    from monitor.probes.engine import run_probe
    from monitor.probes.meters import LoopLagMonitor
    from monitor.probes.transport import build_client

    async with build_client() as client, LoopLagMonitor() as lag:
        return await run_probe(client, target, lag_monitor=lag)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Probe once; `environ` (the entrypoint passes the process environment) holds the key.
    Exit 2 when the options do not fit the protocol, else 0 whatever the probe's outcome."""
    error = options_error(args)
    if error:
        print(f"llm-monitor probe: error: {error}", file=sys.stderr)
        return 2
    result = asyncio.run(probe_once(target_from_args(args, environ)))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_human(result))
    sys.stdout.flush()
    return 0


def _human(result: ProbeResult) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    if result.ok:
        rate = "-" if result.tokens_per_second is None else f"{result.tokens_per_second:.1f} tok/s"
        return (f"ok  ttft {ms(result.ttft_s)}  {rate}  {result.output_tokens} tokens "
                f"({result.token_count_source})  total {ms(result.total_s)}  connect {ms(result.connect_s)}")
    status = f" (HTTP {result.http_status})" if result.http_status else ""
    return f"{result.error_kind}{status}: {result.error}"
