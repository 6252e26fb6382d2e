"""`llm-monitor demo`: the service on simulated loopback providers, for a machine with no keys.

Starts `monitor.testing.demo_providers` (healthy, slow, flaky and rate-limited behaviours on one
loopback server; "down" is a loopback port nobody listens on), points `config/demo.yaml` at them
through DEMO_PROVIDERS_URL / DEMO_DOWN_URL, and serves the whole service (`run` mode) on a
fresh SQLite file in a temporary directory unless `--db` names one. Everything stops with the
process.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Mapping

from monitor.catalog import Catalog, load_catalog
from monitor.settings import Settings
from monitor.testing.demo_providers import DEFAULT_FLAKY_PERIOD_S, start_demo_providers
from monitor.testing.stream_server import unused_port

from llm_monitor.modes import ProcessMode

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
log = logging.getLogger("llm_monitor.demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"demo catalog (default {DEMO_CONFIG.name} of this checkout)")
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temporary directory)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--flaky-period", type=_positive_seconds, default=DEFAULT_FLAKY_PERIOD_S, metavar="SECONDS",
                        help="cycle of the flaky provider: up for two thirds, failing for one third "
                             f"(default {DEFAULT_FLAKY_PERIOD_S:g})")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 1.0 <= value <= 86400.0:
        raise argparse.ArgumentTypeError("must be between 1 and 86400 seconds")
    return value


async def serve_demo(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from llm_monitor.service import serve

    providers = start_demo_providers(flaky_period_s=args.flaky_period)
    env = dict(environ)
    env["DEMO_PROVIDERS_URL"] = providers.url
    env["DEMO_DOWN_URL"] = f"http://127.0.0.1:{unused_port()}"
    try:
        with tempfile.TemporaryDirectory(prefix="llm-monitor-demo-") as scratch:
            if not args.db:
                settings = settings.model_copy(update={"database_url": f"sqlite:///{scratch}/demo.db"})
            catalog: Catalog = load_catalog(settings.config_path)
            base = f"http://{settings.host}:{settings.port}"
            log.info("demo: simulated providers at %s; open %s/status (API %s/v1/models, metrics %s/metrics)",
                     providers.url, base, base, base)
            return await serve(settings, catalog, mode=ProcessMode.RUN, environ=env)
    finally:
        providers.stop()
