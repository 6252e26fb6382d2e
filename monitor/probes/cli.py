"""The `llm-monitor probe` subcommand: one measured probe, printed as ONE JSON object with
`--json` (one human-readable line without it).

`monitor.cli` owns the top-level parser and calls `add_arguments` / `run`. Exit status: 0 when the
probe ran, whatever its outcome (the outcome is in the JSON); argparse's 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from monitor.probes.base import PROTOCOL_NAMES, ProbeResult, ProbeTarget, Secret


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    raw = text[:-1] if text.endswith("s") else text
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in URL: {text!r}") from None
    return text


def _env_name(text: str) -> str:
    if not text or not text.replace("_", "").isalnum() or text[0].isdigit():
        raise argparse.ArgumentTypeError(f"not an environment variable name: {text!r}")
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
    parser.add_argument("--protocol", required=True, choices=PROTOCOL_NAMES, help="wire protocol")
    parser.add_argument("--base-url", required=True, type=_base_url,
                        help="what the provider's SDK calls base URL, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--model", required=True, help="model id as the provider names it")
    parser.add_argument("--api-key-env", type=_env_name, metavar="VAR",
                        help="environment variable holding the API key (or VAR_FILE naming a file)")
    parser.add_argument("--max-tokens", type=_positive_int, default=128, metavar="N")
    parser.add_argument("--timeout", type=_positive_seconds, default=60.0, metavar="S",
                        help="bound on the whole measured request, in seconds")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="protocol option, e.g. max_tokens_field=max_completion_tokens (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def read_api_key(name: str, environ: Mapping[str, str]) -> Secret | None:
    """The key from $NAME, else from the file named by $NAME_FILE; None when neither is set."""
    value = environ.get(name)
    if not value and environ.get(f"{name}_FILE"):
        try:
            value = Path(environ[f"{name}_FILE"]).read_text().strip()
        except OSError:
            value = None
    return Secret(value) if value else None


def target_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ProbeTarget:
    api_key = read_api_key(args.api_key_env, environ) if args.api_key_env else None
    return ProbeTarget(
        protocol=args.protocol,
        base_url=args.base_url,
        model=args.model,
        api_key=api_key,
        api_key_env=args.api_key_env,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        connect_timeout_s=min(10.0, args.timeout),
        stall_timeout_s=min(30.0, args.timeout),
        options=dict(args.option),
    )


async def probe_once(target: ProbeTarget) -> ProbeResult:
    from monitor.probes.engine import run_probe
    from monitor.probes.meters import LoopLagMonitor
    from monitor.probes.transport import build_client

    async with build_client() as client, LoopLagMonitor() as lag:
        return await run_probe(client, target, lag_monitor=lag)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(probe_once(target_from_args(args, os.environ)))
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
