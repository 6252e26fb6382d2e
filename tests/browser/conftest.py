"""Browser tests: Debian's Chromium driven by Playwright for Python, against a real `llm-monitor run`.

- `chromium`: one headless Chromium per session (`/usr/bin/chromium`, Playwright's own browser
  download cannot work here); each test opens its own context.
- `site`: a real `llm-monitor run` (one per test module) probing loopback providers every 3 s:
  a model served by a healthy and a failing provider, a model whose only provider fails, and a
  model whose id and provider name are hostile markup (allowed by the config). Before it starts,
  its database gets 40 days of rolled-up history with holes (`seeded_history`), so charts, the
  uptime bar and 7/30-day figures have data; the fixture waits until every endpoint has been
  probed live too.
- `axe_source`: axe-core fetched from the npm registry by `npm pack` (pinned version, cached
  under ~/.cache), so a clean machine needs only node/npm (the Makefile installs them).
- `Watch`: records console errors, failed requests and HTTP errors of a page.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx
import pytest

from monitor.testing.stream_server import (
    StreamServer,
    html_response,
    json_response,
    openai_stream,
    sse_stream_response,
    unused_port,
)
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.rollups import RollupRules
from monitor.store import open_store
from tests.e2e.conftest import REPO, Service, wait_until

CHROMIUM = "/usr/bin/chromium"
AXE_VERSION = "4.10.3"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000

LLAMA = "meta-llama/llama-3.2-1b-instruct"
DOWN_MODEL = "acme/always-down"
HOSTILE_ID = "evil/<script>alert(\"id\")</script>'x"
HOSTILE_NAME = '<img src=x onerror=alert(1)> "Quoted" & \'single\''
HOSTILE_PROVIDER = "<b>Prov<b> \"q\" 'x' &amp;"
ALLOWED_ORIGIN_PORT_ENV = "BROWSER_TEST_ALLOWED_ORIGIN"


def yaml_quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def site_config(healthy: str, failing: str) -> str:
    return f"""
# checks: [] because these servers stream filler, not the answer canary's count: the states
# under test come from availability alone.
defaults: {{interval: 30m, timeout: 10s, max_tokens: 16, checks: []}}
models:
  - id: {LLAMA}
    name: "Meta: Llama 3.2 1B Instruct"
    endpoints:
      - {{provider: Healthy, protocol: openai, base_url: '{healthy}/v1', model: x}}
      - {{provider: Failing, protocol: openai, base_url: '{failing}/v1', model: x}}
  - id: {DOWN_MODEL}
    name: Always down
    endpoints:
      - {{provider: Broken, protocol: openai, base_url: '{failing}/v1', model: x}}
  - id: {yaml_quote(HOSTILE_ID)}
    name: {yaml_quote(HOSTILE_NAME)}
    endpoints:
      - {{provider: {yaml_quote(HOSTILE_PROVIDER)}, protocol: openai, base_url: '{healthy}/v1', model: x}}
"""


def live_path(model_id: str) -> str:
    return f"/v1/models/{quote(model_id, safe='/')}/live"


@dataclass
class Site:
    base_url: str
    service: Any
    healthy: StreamServer
    failing: StreamServer

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=5, **kw)

    def live(self, model_id: str) -> httpx.Response:
        return self.get(live_path(model_id))


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[StreamServer, StreamServer]]:
    with StreamServer() as healthy, StreamServer() as failing:
        healthy.route("GET", "/v1/models", json_response(200, {"data": []}))
        healthy.route(
            "POST", "/v1/chat/completions",
            lambda _r: sse_stream_response(openai_stream(ttft_s=0.03, gap_s=0.004, n_tokens=10)),
        )
        failing.route("GET", "/v1/models", json_response(200, {"data": []}))
        failing.route("POST", "/v1/chat/completions", html_response(500, "<html>upstream exploded</html>"))
        yield healthy, failing


@pytest.fixture(scope="module")
def host_pages() -> Iterator[tuple[StreamServer, StreamServer]]:
    """Two more loopback origins that will frame the embed: the first is listed in the CORS
    origins, the second is not."""
    with StreamServer() as allowed, StreamServer() as other:
        for server in (allowed, other):
            server.route("GET", "/favicon.ico", html_response(200, ""))
        yield allowed, other


def past_probe(started_at: datetime, *, ok: bool, ttft_s: float = 0.2, tps: float = 50.0) -> ProbeResult:
    return ProbeResult(
        ok=ok, error_kind=None if ok else ErrorKind.HTTP_ERROR, error=None if ok else "HTTP 500",
        http_status=200 if ok else 500, started_at=started_at, ttft_s=ttft_s if ok else None,
        connect_s=None, total_s=0.5, output_tokens=10 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None, tokens_per_second=tps if ok else None,
        protocol="openai", model="x", location="local", trigger=Trigger.SCHEDULED,
    )


def seeded_history(now: datetime) -> list[tuple[str, str, ProbeResult]]:
    """40 days of hourly probes of Llama's endpoints before the service starts, with holes:
    no probe on the UTC days 10 and 11 days ago (whole days missing from the 30-day chart and the uptime bar)
    and none 30 to 36 hours ago (a gap in the 7-day chart); the healthy endpoint fails one
    hour in 8, the failing one always fails."""
    rows = []
    newest = now.replace(minute=30, second=0, microsecond=0) - timedelta(hours=2)
    for back in range(40 * 24):
        moment = newest - timedelta(hours=back)
        if (now.date() - moment.date()).days in (10, 11) or 30 <= back < 36:
            continue
        ok = back % 8 != 3
        rows.append((LLAMA, "Healthy", past_probe(
            moment, ok=ok, ttft_s=0.2 + 0.05 * math.sin(back / 9), tps=50 + 10 * math.cos(back / 7),
        )))
        rows.append((LLAMA, "Failing", past_probe(moment + timedelta(minutes=5), ok=False)))
    return rows


async def seed(database_url: str, now: datetime) -> None:
    """Write the past probes and roll them up, as the service's own roll-up job would."""
    store = await open_store(database_url)
    try:
        await store.insert_results(seeded_history(now))
        await store.rollup(RollupRules())
    finally:
        await store.close()


def start_monitor(directory: Path, config_text: str, env: dict[str, str]) -> Service:
    """`python -m monitor run` on a free port, as tests/e2e's start_service runs it, for the
    whole module (starting one per test would cost most of the time budget)."""
    config = directory / "endpoints.yaml"
    config.write_text(config_text)
    port = unused_port()
    log_path = directory / "service.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")}
    full_env.update(env)
    full_env["LLM_MONITOR_SHUTDOWN_GRACE_S"] = "5"
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    database_url = f"sqlite:///{directory / 'monitor.db'}"
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed(database_url, datetime.now(timezone.utc))).result(timeout=60)
    cmd = [sys.executable, "-m", "monitor", "run", "--config", str(config),
           "--db", database_url, "--port", str(port), "--interval", "3"]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=directory, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    service = Service(proc, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"service exited with {proc.returncode}:\n{service.log()}")
        return service.get("/healthz").status_code == 200

    wait_until(ready, timeout_s=30, what="the service to answer /healthz")
    return service


@pytest.fixture(scope="module")
def site(tmp_path_factory, providers, host_pages) -> Iterator[Site]:
    healthy, failing = providers
    allowed, _ = host_pages
    service = start_monitor(
        tmp_path_factory.mktemp("site"), site_config(healthy.url, failing.url),
        {"LLM_MONITOR_CORS_ORIGINS": allowed.url},
    )
    result = Site(service.base_url, service, healthy, failing)
    try:
        def every_endpoint_probed() -> bool:
            for model_id in (LLAMA, DOWN_MODEL, HOSTILE_ID):
                body = result.live(model_id).json()
                if any(e["last_probe_at"] is None for e in body["endpoints"]):
                    return False
            return True

        wait_until(every_endpoint_probed, timeout_s=30, what="every endpoint to be probed")
        yield result
        assert service.stop() == 0, service.log()
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()


# Module scope, not session: while Playwright's sync API runs, this thread has a running event
# loop, and every later test that calls asyncio.run() (or runs an async test) would fail.
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=TIMEOUT_MS)
        yield browser
        browser.close()


@pytest.fixture
def context_factory(chromium):
    opened = []

    def new(**kw: Any):
        # Pages are cacheable for a minute (as /live is): tests revalidate every load, so that a
        # page read again after a probe landed is not the browser's cached copy.
        kw.setdefault("extra_http_headers", {"Cache-Control": "no-cache"})
        context = chromium.new_context(**kw)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        opened.append(context)
        return context

    yield new
    for context in opened:
        context.close()


@dataclass
class Watch:
    """What went wrong while a page loaded: console errors, failed requests, HTTP >= 400."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Any) -> "Watch":
        watch = cls()
        page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: watch.console_errors.append(str(e)))
        # ERR_ABORTED is a request the page itself dropped (a test navigating on while the
        # favicon still loads), not one the server failed.
        page.on("requestfailed", lambda r: watch.failed_requests.append(f"{r.url} {r.failure}")
                if "ERR_ABORTED" not in (r.failure or "") else None)
        page.on("request", lambda r: watch.requests.append(r.url))
        page.on("response", lambda r: watch.http_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        def on_dialog(dialog: Any) -> None:
            watch.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        return watch

    def assert_clean(self) -> None:
        assert self.console_errors == [], self.console_errors
        assert self.failed_requests == [], self.failed_requests
        assert self.http_errors == [], self.http_errors
        assert self.dialogs == [], self.dialogs


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llm-endpoint-monitor" / f"axe-core-{AXE_VERSION}"


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js of the pinned axe-core, from the npm registry (`npm pack`), cached."""
    target = _cache_dir() / "axe.min.js"
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise AssertionError("npm is missing: `make deps` installs nodejs and npm for the axe-core checks")
        target.parent.mkdir(parents=True, exist_ok=True)
        work = target.parent / "pack"
        work.mkdir(exist_ok=True)
        subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--silent", "--pack-destination", str(work)],
            check=True, timeout=120, capture_output=True,
        )
        tarball = next(work.glob("axe-core-*.tgz"))
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            partial = target.with_suffix(".part")
            partial.write_bytes(member.read())
            licence = archive.extractfile("package/LICENSE")
            if licence is not None:
                (target.parent / "LICENSE").write_bytes(licence.read())
            partial.replace(target)
    return target.read_text()


def stable(site: Site, action, *, path: str = "/v1/models", attempts: int = 10):
    """Run `action()` between two reads of `path` (every model's live figures by default) and
    return (action result, JSON body) from an attempt where the figures did not change meanwhile
    (same ETag before and after): probes land every few seconds, so a page and an API read are
    only comparable when nothing landed in between."""
    for _ in range(attempts):
        before = site.get(path)
        result = action()
        after = site.get(path)
        if before.headers["etag"] == after.headers["etag"]:
            return result, after.json()
        time.sleep(0.3)
    raise AssertionError(f"{path} changed during each of {attempts} attempts")
