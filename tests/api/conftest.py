"""Parts for the API tests: a LiveView over literal data, an in-memory store that records the
verbs the app calls, and an in-process client.

The recording lets tests assert that live figures never touch the store and that the probes
route passes the limit through.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from api.app import create_app
from monitor.metrics import build_metrics
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.settings import Settings
from monitor.stats import EndpointLive, ModelLive
from monitor.store import InMemoryStore, Store

LLAMA = "meta-llama/llama-3.2-1b-instruct"
QWEN = "qwen/qwen3-32b"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
ADMIN_TOKEN = "s3cret-admin-token"
ALLOWED_ORIGIN = "https://catalog.example"


@dataclass(frozen=True)
class FakeModel:
    id: str
    name: str


LLAMA_LIVE = ModelLive(
    model=LLAMA,
    best_ttft_ms=244.0,
    best_throughput_tps=57.25,
    active_endpoints=1,
    total_endpoints=2,
    available_via=("Cloudflare", "Groq"),
    updated_at=T0,
    window_s=86400.0,
    endpoints=(
        EndpointLive(
            provider="Cloudflare", active=True, last_probe_at=T0, last_error_kind=None,
            ttft_ms_p50=244.0, throughput_tps_p50=57.25, uptime=0.75, samples=4,
            ok_samples=3, ttft_ms_p5=200.5, ttft_ms_p95=290.25, uptime_ci=(0.30064184258240184, 0.9544127391902995),
            answer_ok_ratio=1.0,
        ),
        EndpointLive(
            provider="Groq", active=False, last_probe_at=T0 - timedelta(hours=2),
            last_error_kind="auth_error", ttft_ms_p50=None, throughput_tps_p50=None, uptime=0.0, samples=3,
        ),
    ),
)
# A model with no data at all (fresh machine, no credentials).
QWEN_LIVE = ModelLive(
    model=QWEN, best_ttft_ms=None, best_throughput_tps=None, active_endpoints=0, total_endpoints=1,
    available_via=("Cerebras",), updated_at=None, window_s=86400.0,
    endpoints=(
        EndpointLive(
            provider="Cerebras", active=False, last_probe_at=None, last_error_kind=None,
            ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=0,
        ),
    ),
)


class FakeLive:
    def __init__(self, entries: list[tuple[FakeModel, ModelLive]]) -> None:
        self.entries = entries

    def models(self):
        return list(self.entries)

    def model(self, model_id: str):
        return next((live for m, live in self.entries if m.id == model_id), None)

    def providers(self, model_id: str):
        live = self.model(model_id)
        return None if live is None else tuple(live.available_via)


class FakeWindows:
    """A WindowedView over a FakeLive: another window or profile is the same literal figures with
    that `window_s`; records every (model or None, window_s, input_tokens) it computes."""

    def __init__(self, live: FakeLive) -> None:
        self.live = live
        self.computed: list[tuple[Any, ...]] = []
        self.cache: dict[tuple[Any, ...], ModelLive] = {}

    def cached(self, model_id, window_s=None, input_tokens=None):
        figures = self.live.model(model_id)
        if figures is None or (window_s in (None, figures.window_s) and input_tokens is None):
            return figures
        return self.cache.get((model_id, window_s, input_tokens))

    async def model(self, model_id, window_s=None, input_tokens=None):
        hit = self.cached(model_id, window_s, input_tokens)
        if hit is not None or self.live.model(model_id) is None:
            return hit
        self.computed.append((model_id, window_s, input_tokens))
        figures = replace(self.live.model(model_id), window_s=window_s or 86400.0)
        self.cache[(model_id, window_s, input_tokens)] = figures
        return figures

    async def models(self, window_s=None, input_tokens=None):
        return [(m, await self.model(m.id, window_s, input_tokens)) for m, _ in self.live.models()]


def probe_result(minutes_ago: int, *, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        error_kind=None if ok else ErrorKind.TIMEOUT,
        error=None if ok else "no first token within 60s",
        http_status=200 if ok else None,
        started_at=T0 - timedelta(minutes=minutes_ago),
        ttft_s=0.244 if ok else None,
        connect_s=0.05,
        total_s=2.5 if ok else 60.0,
        output_tokens=128 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=57.25 if ok else None,
        protocol="cloudflare",
        model="@cf/meta/llama-3.2-1b-instruct",
        token_chunks=40 if ok else 0,
        first_read_tokens=1 if ok else 0,
    )


class RecordingStore(InMemoryStore):
    """InMemoryStore that records every Store verb called on it, with its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []


def _recorded(verb: str):
    async def call(self: RecordingStore, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((verb, *args, *sorted(kwargs.items())))
        return await getattr(InMemoryStore, verb)(self, *args, **kwargs)

    return call


for _verb, _ in inspect.getmembers(Store, inspect.isfunction):
    if not _verb.startswith("_"):
        setattr(RecordingStore, _verb, _recorded(_verb))


class FakeAdmin:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def probe_now(self, model_id: str, provider: str) -> dict[str, Any]:
        self.calls.append(("probe_now", model_id, provider))
        return probe_result(0).to_dict()

    async def reload(self) -> dict[str, Any]:
        self.calls.append(("reload",))
        return {"reloaded": True, "models": 2, "endpoints": 3}


def make_settings(*, admin_token: str | None = ADMIN_TOKEN, cors_origins=(ALLOWED_ORIGIN,), cache_max_age_s=60):
    return Settings(
        cors_origins=list(cors_origins),
        admin_token=None if admin_token is None else SecretStr(admin_token),
        window_s=86400.0,
        cache_max_age_s=cache_max_age_s,
    )


@pytest.fixture
def fake_live() -> FakeLive:
    return FakeLive([(FakeModel(LLAMA, "Meta: Llama 3.2 1B Instruct"), LLAMA_LIVE), (FakeModel(QWEN, "Qwen3 32B"), QWEN_LIVE)])


@pytest.fixture
async def history_store() -> RecordingStore:
    """40 probes of LLAMA/Cloudflare, 5 minutes apart (every fourth one failed); no calls yet."""
    store = RecordingStore()
    await store.insert_results(
        [(LLAMA, "Cloudflare", probe_result(m, ok=m % 20 != 10)) for m in range(0, 200, 5)]
    )
    store.calls.clear()
    return store


@pytest.fixture
def readiness_state() -> dict[str, Any]:
    return {"database": True, "scheduler": True, "buffered_results": 0}


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = build_metrics(registry, version="1.2.3")
    metrics.set_model_live(LLAMA_LIVE)
    metrics.record_probe(LLAMA, "Cloudflare", probe_result(0))
    return registry


@pytest.fixture
def fake_admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def fake_windows(fake_live) -> FakeWindows:
    return FakeWindows(fake_live)


@pytest.fixture
def app_factory(fake_live, fake_windows, history_store, registry, readiness_state, fake_admin):
    def build(*, settings=None, admin=fake_admin, live=fake_live, fast_path=True, windows=None):
        async def readiness() -> dict[str, Any]:
            if isinstance(readiness_state.get("raise"), Exception):
                raise readiness_state["raise"]
            return dict(readiness_state)

        return create_app(
            settings=settings or make_settings(),
            store=history_store,
            live=live,
            registry=registry,
            readiness=readiness,
            admin=admin,
            fast_path=fast_path,
            windows=windows if windows is not None else (fake_windows if live is fake_live else None),
        )

    return build


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
