"""Liveness checks between probes: the I/O loop.

Every `liveness_interval_s` (per endpoint; None = off) the checker sends each endpoint the cheap,
token-free GET its protocol declares (`WireProtocol.liveness_url`, usually the probe's warm-up
request, e.g. `GET {base_url}/models`), on a fresh connection so DNS, TCP and TLS are exercised
every time. `monitor.liveness_rules.classify` reads each answer against the endpoint's liveness
history; this module acts on the verdict:

- a hard failure (DNS, connect, TLS, timeout; 5xx/401/403/404 where it used to answer 2xx) calls
  `on_failure(model, endpoint)`, which starts a confirmation probe (monitor.confirm);
- a 2xx after a hard failure calls `on_recovered(model, endpoint)`;
- 429 backs the endpoint's checks off (doubling, at most its probe interval); a 404 from the start
  ("not offered"), 429s or 401/403s in a row turn liveness off for the endpoint (not down).

Liveness results are not probes: nothing is stored and no figure sees them. They are counted
(`llm_liveness_checks_total{outcome}`, `llm_liveness_up`) and only state changes are logged, never
with a URL, header or provider text (which may hold secrets). Every read is bounded: the whole
check by `timeout_s`, the body by `BODY_LIMIT` bytes (never parsed), headers by h11's own limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
from typing import Any, Callable, Mapping

import httpx

from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.liveness_rules import (
    Action,
    LivenessAnswer,
    LivenessHistory,
    Verdict,
    classify,
    next_wait_s,
)
from monitor.metrics import Metrics
from monitor.probes.base import ProbeTarget, WireProtocol
from monitor.probes.outcomes import DNSLookupError, DNSLookupTimeout
from monitor.probes.registry import PROTOCOLS
from monitor.probes.urls import http_url_problem

log = logging.getLogger(__name__)

# Longest a liveness check may take (also bounded by the endpoint's probe timeout).
LIVENESS_TIMEOUT_S = 10.0
# Body bytes read (and discarded) before the connection is dropped.
BODY_LIMIT = 64 * 1024
# Checks in flight at once, across all endpoints.
MAX_CONCURRENT_CHECKS = 32

EndpointCallback = Callable[[ModelConfig, EndpointConfig], None]


def liveness_request(protocol: WireProtocol, target: ProbeTarget) -> tuple[str, dict[str, str]] | None:
    """(url, headers) of the endpoint's liveness GET, or None when its protocol has none."""
    if protocol.liveness_url is None:
        return None
    url = protocol.liveness_url(target)
    if not url:
        return None
    headers = dict(protocol.liveness_headers(target)) if protocol.liveness_headers else {}
    return url, headers


class _Trace:
    """Which connection step started and never completed (httpcore `trace` extension)."""

    def __init__(self) -> None:
        self.events: set[str] = set()

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.events.add(name.split(".", 1)[1])

    def in_tls(self) -> bool:
        return "start_tls.started" in self.events and "start_tls.complete" not in self.events


def _tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def check_once(client: httpx.AsyncClient, url: str, headers: Mapping[str, str], *,
                     timeout_s: float, body_limit: int = BODY_LIMIT) -> LivenessAnswer:
    """Send one liveness GET and return what came back: a status or a transport failure. Never
    raises for the provider's sake; the body is read up to `body_limit` bytes and thrown away."""
    trace = _Trace()
    request = client.build_request(
        "GET", url, headers={**headers, "connection": "close"},
        timeout=httpx.Timeout(timeout_s), extensions={"trace": trace},
    )
    status: int | None = None
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.send(request, stream=True)
            status = response.status_code
            try:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > body_limit:
                        break
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as exc:
        if status is not None:
            return LivenessAnswer(status=status)  # answered; a slow body says nothing more
        if isinstance(exc, httpx.ConnectTimeout) and isinstance(exc.__cause__, DNSLookupTimeout):
            return LivenessAnswer(failure="dns_error")
        return LivenessAnswer(failure="tls_error" if trace.in_tls() else "timeout")
    except httpx.HTTPError as exc:
        if status is not None:
            return LivenessAnswer(status=status)
        if isinstance(exc.__cause__, (DNSLookupError, DNSLookupTimeout)):
            return LivenessAnswer(failure="dns_error")
        if trace.in_tls() or _tls_error(exc):
            return LivenessAnswer(failure="tls_error")
        return LivenessAnswer(failure="connect_error")
    except OSError:
        if status is not None:
            return LivenessAnswer(status=status)
        return LivenessAnswer(failure="connect_error")
    return LivenessAnswer(status=status)


def _spread_s(key: str, interval_s: float) -> float:
    """A stable offset in [0, interval) for the first check, so checks do not start in a burst."""
    digest = hashlib.sha256(("liveness" + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval_s


class LivenessChecker:
    """One task per endpoint with liveness on; `apply(catalog)` keeps them matching the config."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        metrics: Metrics,
        *,
        environ: Mapping[str, str],
        on_failure: EndpointCallback = lambda model, endpoint: None,
        on_recovered: EndpointCallback = lambda model, endpoint: None,
        max_concurrent: int = MAX_CONCURRENT_CHECKS,
        timeout_s: float = LIVENESS_TIMEOUT_S,
        spread_first: bool = True,
    ) -> None:
        """`spread_first`: start each endpoint's first check at a stable offset within its
        interval (False: at once, for tests and benchmarks)."""
        self._client = client
        self._metrics = metrics
        self._environ = environ
        self._on_failure = on_failure
        self._on_recovered = on_recovered
        self._slots = asyncio.Semaphore(max_concurrent)
        self._timeout_s = timeout_s
        self._spread_first = spread_first
        self._catalog: Catalog | None = None
        self._seen: dict[tuple[str, str], EndpointConfig] = {}  # as last applied
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._history: dict[tuple[str, str], LivenessHistory] = {}
        self._state: dict[tuple[str, str], str] = {}
        self.off: dict[tuple[str, str], str] = {}  # endpoints liveness turned off for, and why

    # --- lifecycle ---
    def start(self, catalog: Catalog) -> None:
        """Must be called inside the running event loop."""
        self.apply(catalog)

    def apply(self, catalog: Catalog) -> None:
        """Start checks for new endpoints, restart changed ones (forgetting their history and
        any "off"), stop removed ones."""
        self._catalog = catalog
        wanted = {(model.id, endpoint.provider): endpoint for model, endpoint in catalog.endpoints()}
        for key in list(self._seen):
            if wanted.get(key) != self._seen[key]:
                self._forget(key)
        for key, endpoint in wanted.items():
            if key in self._seen:
                continue
            self._seen[key] = endpoint
            if endpoint.liveness_interval_s is None:
                continue
            if self._request_of(endpoint) is None:
                self.off[key] = "no liveness request"
                continue
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._loop(*key), name=f"liveness {json.dumps(key)}")

    def _forget(self, key: tuple[str, str]) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        for state in (self._seen, self._history, self._state, self.off):
            state.pop(key, None)
        self._metrics.set_liveness_up(key[0], key[1], None)

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _request_of(self, endpoint: EndpointConfig) -> tuple[str, dict[str, str]] | None:
        """The endpoint's liveness request, or None when it cannot have one: its protocol has
        none, or its config does not resolve (an unset key or variable: the probes report it)."""
        protocol = PROTOCOLS.get(endpoint.protocol)
        if protocol is None:
            return None
        target = endpoint.to_target(self._environ)
        if target.config_error or http_url_problem(target.base_url):
            return None
        if target.api_key_env and (target.api_key is None or not target.api_key.reveal()):
            return None
        try:
            return liveness_request(protocol, target)
        except Exception:  # a protocol that cannot express this target: no liveness for it
            return None

    # --- the per-endpoint loop ---
    async def _loop(self, model_id: str, provider: str) -> None:
        key = (model_id, provider)
        try:
            endpoint = self._seen[key]
            assert endpoint.liveness_interval_s is not None
            if self._spread_first:
                await asyncio.sleep(_spread_s(json.dumps(key), endpoint.liveness_interval_s))
            while True:
                model, endpoint = self._lookup(key)
                if model is None or endpoint is None or endpoint.liveness_interval_s is None:
                    return
                verdict = await self.check(model, endpoint)
                if verdict is None or verdict.action == Action.DISABLE:
                    return
                await asyncio.sleep(next_wait_s(
                    endpoint.liveness_interval_s, verdict.history, max_s=endpoint.interval_s,
                ))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not end liveness silently for the whole process
            log.exception("liveness loop of %s/%s stopped", model_id, provider)

    def _lookup(self, key: tuple[str, str]) -> tuple[ModelConfig | None, EndpointConfig | None]:
        if self._catalog is None:
            return None, None
        model = self._catalog.find(key[0])
        return model, None if model is None else model.endpoint(key[1])

    async def check(self, model: ModelConfig, endpoint: EndpointConfig) -> Verdict | None:
        """Run one check of the endpoint now and act on its verdict; None when it has no
        liveness request."""
        request = self._request_of(endpoint)
        if request is None:
            return None
        url, headers = request
        key = (model.id, endpoint.provider)
        async with self._slots:
            answer = await check_once(self._client, url, headers,
                                      timeout_s=min(self._timeout_s, endpoint.timeout_s))
        verdict = classify(answer, self._history.get(key, LivenessHistory()))
        self._history[key] = verdict.history
        self._metrics.count_liveness(model.id, endpoint.provider, verdict.outcome)
        if verdict.action == Action.DISABLE:
            self.off[key] = verdict.reason
            self._metrics.set_liveness_up(model.id, endpoint.provider, None)
        elif verdict.up is not None:
            self._metrics.set_liveness_up(model.id, endpoint.provider, verdict.up)
        self._log_change(key, verdict)
        if verdict.action == Action.CONFIRM:
            self._on_failure(model, endpoint)
        elif verdict.action == Action.RECOVERED:
            self._on_recovered(model, endpoint)
        return verdict

    def _log_change(self, key: tuple[str, str], verdict: Verdict) -> None:
        if verdict.action == Action.DISABLE:
            state = "off"
        elif verdict.action == Action.BACK_OFF:
            state = "backing off"
        elif verdict.up is True:
            state = "up"
        elif verdict.up is False:
            state = "failing"
        else:
            return  # says nothing: no change
        before = self._state.get(key, "unknown")
        if state == before:
            return
        self._state[key] = state
        level = logging.WARNING if state in ("failing", "off") else logging.INFO
        log.log(level, "liveness %s/%s: %s -> %s (%s)", key[0], key[1], before, state, verdict.reason)
