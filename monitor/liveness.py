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
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import httpx

from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.catalog.schema import LIVENESS_MAX_S
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


Key = tuple[str, str]  # (model id, provider)
RequestKey = tuple[str, tuple[tuple[str, str], ...]]  # (url, sorted headers): in memory only


@dataclass(frozen=True)
class _Group:
    """Endpoints whose liveness request is the same GET: one check answers for all of them."""

    request: RequestKey
    members: tuple[tuple[Key, EndpointConfig], ...]  # sorted by key

    @property
    def keys(self) -> list[Key]:
        return [key for key, _ in self.members]

    @property
    def interval_s(self) -> float:
        return min(endpoint.liveness_interval_s or LIVENESS_MAX_S for _, endpoint in self.members)

    @property
    def max_wait_s(self) -> float:
        return min(endpoint.interval_s for _, endpoint in self.members)

    def name(self) -> str:
        """How log lines name the group: its first endpoint, and how many more share it."""
        (model_id, provider), more = self.members[0][0], len(self.members) - 1
        return f"{model_id}/{provider}" + (f" (and {more} more on the same request)" if more else "")


class LivenessChecker:
    """One check loop per distinct liveness request; `apply(catalog)` keeps them matching the
    config.

    Endpoints whose request is the same (a provider's `GET {base_url}/models` with one key serves
    every model behind it) share one check: its answer is counted, gauged and acted on for each
    of them, and the provider sees one request per interval instead of one per model."""

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
        """`spread_first`: start each group's first check at a stable offset within its
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
        self._seen: dict[Key, EndpointConfig] = {}  # as last applied
        self._groups: dict[RequestKey, _Group] = {}
        self._group_of: dict[Key, RequestKey] = {}
        self._tasks: dict[RequestKey, asyncio.Task[None]] = {}
        self._history: dict[RequestKey, LivenessHistory] = {}
        self._state: dict[RequestKey, str] = {}
        self.off: dict[Key, str] = {}  # endpoints liveness turned off for, and why

    @property
    def groups(self) -> int:
        """How many distinct liveness requests are being checked."""
        return len(self._tasks)

    # --- lifecycle ---
    def start(self, catalog: Catalog) -> None:
        """Must be called inside the running event loop."""
        self.apply(catalog)

    def apply(self, catalog: Catalog) -> None:
        """Start checks for new requests, restart groups whose members changed (forgetting their
        history and any "off"), stop groups left with no member."""
        self._catalog = catalog
        wanted = {(model.id, endpoint.provider): endpoint for model, endpoint in catalog.endpoints()}
        for key in [key for key in self._seen if key not in wanted]:
            self._seen.pop(key)
            self.off.pop(key, None)
            self._metrics.set_liveness_up(key[0], key[1], None)
        grouped: dict[RequestKey, list[tuple[Key, EndpointConfig]]] = {}
        for key, endpoint in wanted.items():
            if self._seen.get(key) != endpoint:
                self.off.pop(key, None)
            self._seen[key] = endpoint
            if endpoint.liveness_interval_s is None:
                continue
            request = self._request_of(endpoint)
            if request is None:
                self.off[key] = "no liveness request"
                continue
            url, headers = request
            grouped.setdefault((url, tuple(sorted(headers.items()))), []).append((key, endpoint))
        groups = {request: _Group(request, tuple(sorted(members, key=lambda m: m[0])))
                  for request, members in grouped.items()}
        for request in list(self._groups):
            if groups.get(request) != self._groups[request]:
                self._stop(request)
        for request, group in groups.items():
            if request in self._groups:
                continue
            self._groups[request] = group
            for key in group.keys:
                self._group_of[key] = request
                self.off.pop(key, None)
            self._tasks[request] = asyncio.get_running_loop().create_task(
                self._loop(request), name=f"liveness {group.name()}")

    def _stop(self, request: RequestKey) -> None:
        task = self._tasks.pop(request, None)
        if task is not None:
            task.cancel()
        group = self._groups.pop(request)
        for key in group.keys:
            if self._group_of.get(key) == request:
                del self._group_of[key]
                self._metrics.set_liveness_up(key[0], key[1], None)
        self._history.pop(request, None)
        self._state.pop(request, None)

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

    # --- the per-request loop ---
    async def _loop(self, request: RequestKey) -> None:
        group = self._groups[request]
        try:
            if self._spread_first:
                await asyncio.sleep(_spread_s(json.dumps(group.keys[0]), group.interval_s))
            while True:
                verdict = await self._check_group(group)
                if verdict.action == Action.DISABLE:
                    return
                await asyncio.sleep(next_wait_s(group.interval_s, verdict.history, max_s=group.max_wait_s))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not end liveness silently for the whole process
            log.exception("liveness loop of %s stopped", group.name())

    def _lookup(self, key: Key) -> tuple[ModelConfig | None, EndpointConfig | None]:
        if self._catalog is None:
            return None, None
        model = self._catalog.find(key[0])
        return model, None if model is None else model.endpoint(key[1])

    async def check(self, model: ModelConfig, endpoint: EndpointConfig) -> Verdict | None:
        """Run one check of the endpoint's request now and act on its verdict for every endpoint
        that shares it; None when it has no liveness request."""
        request = self._request_of(endpoint)
        if request is None:
            return None
        url, headers = request
        request_key = (url, tuple(sorted(headers.items())))
        group = self._groups.get(request_key) or _Group(request_key, (((model.id, endpoint.provider), endpoint),))
        return await self._check_group(group, given=(model, endpoint))

    async def _check_group(self, group: _Group,
                           given: tuple[ModelConfig, EndpointConfig] | None = None) -> Verdict:
        """`given`: the endpoint a caller asked about, acted on even outside the applied catalog."""
        url, headers = group.request
        timeout_s = min([self._timeout_s] + [endpoint.timeout_s for _, endpoint in group.members])
        async with self._slots:
            answer = await check_once(self._client, url, dict(headers), timeout_s=timeout_s)
        verdict = classify(answer, self._history.get(group.request, LivenessHistory()))
        self._history[group.request] = verdict.history
        self._log_change(group, verdict)
        for key, _ in group.members:
            model, endpoint = self._lookup(key)
            if (model is None or endpoint is None) and given is not None and key == (given[0].id, given[1].provider):
                model, endpoint = given
            self._metrics.count_liveness(key[0], key[1], verdict.outcome)
            if verdict.action == Action.DISABLE:
                self.off[key] = verdict.reason
                self._metrics.set_liveness_up(key[0], key[1], None)
            elif verdict.up is not None:
                self._metrics.set_liveness_up(key[0], key[1], verdict.up)
            if model is None or endpoint is None:
                continue  # left the config while the check ran
            if verdict.action == Action.CONFIRM:
                self._on_failure(model, endpoint)
            elif verdict.action == Action.RECOVERED:
                self._on_recovered(model, endpoint)
        return verdict

    def _log_change(self, group: _Group, verdict: Verdict) -> None:
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
        before = self._state.get(group.request, "unknown")
        if state == before:
            return
        self._state[group.request] = state
        level = logging.WARNING if state in ("failing", "off") else logging.INFO
        log.log(level, "liveness %s: %s -> %s (%s)", group.name(), before, state, verdict.reason)
