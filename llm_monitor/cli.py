"""The `llm-monitor` command (`python -m monitor` does the same): parses the command line, builds
the one `Settings` object and hands each subcommand to the module that does the work.

Subcommands: `probe` (one measured request, JSON out; `monitor.probes.cli`), `run` (scheduler +
API + /metrics in one process), `scheduler` (probing + /metrics, for production), `api`
(read-only API replicas over the same database) -- those three go to `llm_monitor.service`, which
builds the process's resources -- `check-config PATH`, `db upgrade`, `db prune`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import ValidationError

from llm_monitor.modes import ProcessMode
from monitor.catalog.schema import INTERVAL_MAX_S, INTERVAL_MIN_S
from monitor.settings import Settings

log = logging.getLogger("monitor")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
    return value


def _interval(text: str) -> float:
    value = _positive_float(text)
    if not INTERVAL_MIN_S <= value <= INTERVAL_MAX_S:
        raise argparse.ArgumentTypeError(
            f"must be between {INTERVAL_MIN_S:g} and {INTERVAL_MAX_S:g} seconds: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from monitor.probes import cli as probe_cli

    parser = argparse.ArgumentParser(
        prog="llm-monitor", description="Live TTFT / throughput monitoring of LLM provider endpoints."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = commands.add_parser("probe", help="run ONE probe and print its result as JSON")
    probe_cli.add_arguments(probe)

    for mode, help_text, default_port in (
        (ProcessMode.RUN, "scheduler + API + /metrics in one process (the embedded default)", 8000),
        (ProcessMode.SCHEDULER, "probe on schedule and serve /metrics (production: one per deployment)", 9000),
        (ProcessMode.API, "serve the API from the database (production: any number of replicas)", 8000),
    ):
        service = commands.add_parser(mode.value, help=help_text)
        service.add_argument("--config", type=Path, help="endpoints YAML (default config/endpoints.yaml)")
        service.add_argument("--db", help="database URL (default $DATABASE_URL or sqlite:///./data/monitor.db)")
        service.add_argument("--host", help="listen address (default 127.0.0.1)")
        service.add_argument("--port", type=_port, help=f"listen port (default {default_port})")
        service.set_defaults(default_port=default_port)
        service.add_argument(
            "--interval", type=_interval, metavar="SECONDS",
            help="override every endpoint's probe interval" if mode.probes else
            "the scheduler's --interval, if it has one (judges 'active': 2 intervals)",
        )
        if mode.probes:
            service.add_argument(
                "--location", metavar="NAME",
                help="where this process probes from, [a-z0-9-]{1,32} (default $LLM_MONITOR_LOCATION or local)",
            )

    check = commands.add_parser("check-config", help="validate an endpoints YAML file")
    check.add_argument("path", type=Path)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="apply migrations up to the latest schema")
    upgrade.add_argument("--db", help="database URL (default $DATABASE_URL or sqlite:///./data/monitor.db)")
    prune = db_commands.add_parser("prune", help="roll up new probes, then apply the retention now")
    prune.add_argument("--db", help="database URL (default $DATABASE_URL or sqlite:///./data/monitor.db)")
    prune.add_argument("--config", type=Path, help="endpoints YAML with the retention (default config/endpoints.yaml)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags over the environment over the defaults; a service command's own default port
    (9000 for `scheduler`) applies only when neither `--port` nor `LLM_MONITOR_PORT` sets one."""
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        overrides["config_path"] = args.config
    if getattr(args, "db", None):
        overrides["database_url"] = args.db
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "interval", None) is not None:
        overrides["interval_override_s"] = args.interval
    if getattr(args, "location", None) is not None:
        overrides["location"] = args.location
    settings = Settings(**overrides)
    if hasattr(args, "default_port") and "port" not in settings.model_fields_set:
        settings = settings.model_copy(update={"port": args.default_port})
    return settings


def check_config(path: Path, environ: Mapping[str, str]) -> int:
    from monitor.catalog import CatalogError, catalog_warnings, load_catalog

    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        print(f"{path}: invalid config:\n{exc}", file=sys.stderr)
        return 1
    endpoints = sum(len(m.endpoints) for m in catalog.models)
    for warning in catalog_warnings(catalog, environ):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: OK ({len(catalog.models)} models, {endpoints} endpoints)")
    return 0


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request URL at INFO; probes report their own outcome instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # alembic lists its autogenerate plugins at INFO on every start; its migration lines stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "probe":
        from monitor.probes import cli as probe_cli

        return probe_cli.run(args, os.environ)
    if args.command == "check-config":
        return check_config(args.path, os.environ)

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:  # one line per bad setting, named as its environment variable
        for error in exc.errors():
            name = "LLM_MONITOR_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"invalid setting {name}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "db" and args.db_command == "prune":
        from monitor.retention import prune_command

        return prune_command(settings)
    if args.command == "db":
        from monitor.store import upgrade

        upgrade(settings.database_url)
        print("database schema is up to date")
        return 0

    from monitor.catalog import CatalogError, load_catalog
    from llm_monitor.service import serve

    try:
        catalog = load_catalog(settings.config_path)
    except CatalogError as exc:
        print(f"{settings.config_path}: invalid config:\n{exc}", file=sys.stderr)
        return 1
    # Install our own handlers first: uvicorn restores the previous handlers after serving and
    # re-raises the signal it caught, which must not kill the process before the drain.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    with suppress(KeyboardInterrupt):
        return asyncio.run(serve(settings, catalog, mode=ProcessMode(args.command), environ=os.environ))
    return 0
