"""Cost accounting on literal prices: per probe (usage, estimate, unbilled failures, merged canary
usage), live figures (mean per probe, monthly projection with confirm rate and locations), the
check-config projection and its budget warning, and the runner pricing real probes over sockets."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.catalog.models import Catalog, EndpointConfig, ModelConfig, Price
from monitor.cost import (
    MONTH_S,
    Usage,
    add_usage_cost,
    catalog_projection,
    endpoint_cost,
    format_usd,
    price_probe,
    probe_cost_usd,
    projection_lines,
)
from monitor.live import LiveFigures
from monitor.metrics import build_metrics
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.runner import ResultBuffer, Runner
from monitor.stats import ProbeSample
from monitor.store.memory import InMemoryStore
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
# The seed model's price: $0.027 in, $0.201 out per 1M tokens.
SEED = Price(input_per_mtok=0.027, output_per_mtok=0.201)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def result(**changes) -> ProbeResult:
    base = ProbeResult(
        ok=True, error_kind=None, error=None, http_status=200, started_at=T0, ttft_s=0.2, connect_s=0.01,
        total_s=1.0, output_tokens=128, token_count_source=TokenCountSource.USAGE, tokens_per_second=50.0,
    )
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- per probe
def test_cost_from_reported_prompt_tokens_and_output_tokens():
    # 1,000 in x 0.027 + 128 out x 0.201 = 27 + 25.728 = 52.728 micro-dollars
    assert probe_cost_usd(result(prompt_tokens=1000), SEED) == pytest.approx(52.728e-6, rel=1e-12)


def test_cost_falls_back_to_the_profile_input_tokens_without_usage():
    # 100 (default profile) x 0.027 + 128 x 0.201 = 2.7 + 25.728
    assert probe_cost_usd(result(prompt_tokens=None), SEED) == pytest.approx(28.428e-6, rel=1e-12)
    assert probe_cost_usd(result(prompt_tokens=None, input_tokens=10_000), SEED) == pytest.approx(295.728e-6, rel=1e-12)


def test_no_price_no_cost():
    assert probe_cost_usd(result(), None) is None
    assert price_probe(result(), None).cost_usd is None


@pytest.mark.parametrize(
    "changes",
    [
        {"ok": False, "error_kind": ErrorKind.CONNECT_ERROR, "http_status": None, "output_tokens": None},
        {"ok": False, "error_kind": ErrorKind.HTTP_ERROR, "http_status": 500, "output_tokens": None},
        {"ok": False, "error_kind": ErrorKind.RATE_LIMITED, "http_status": 429, "output_tokens": None},
        {"ok": False, "error_kind": ErrorKind.CONFIG_ERROR, "http_status": None, "output_tokens": None},
        {"ok": False, "error_kind": ErrorKind.TIMEOUT, "http_status": None, "output_tokens": None},
    ],
)
def test_requests_the_provider_never_answered_cost_zero_not_null(changes):
    assert probe_cost_usd(result(**changes), SEED) == 0.0


def test_a_stream_that_broke_after_the_head_is_billed_for_what_it_reported():
    broken = result(ok=False, error_kind=ErrorKind.STREAM_ERROR, http_status=200, output_tokens=10, prompt_tokens=50)
    assert probe_cost_usd(broken, SEED) == pytest.approx((50 * 0.027 + 10 * 0.201) / 1e6)


def test_hostile_token_counts_cost_nothing():
    assert probe_cost_usd(result(prompt_tokens=-5, output_tokens=-1), SEED) == 0.0


def test_canary_usage_is_added_at_pricing_or_after():
    canary = Usage(prompt_tokens=200, output_tokens=30)
    canary_usd = (200 * 0.027 + 30 * 0.201) / 1e6
    priced = price_probe(result(prompt_tokens=1000), SEED, extra=[canary])
    assert priced.cost_usd == pytest.approx(52.728e-6 + canary_usd)
    later = add_usage_cost(price_probe(result(prompt_tokens=1000), SEED), SEED, canary)
    assert later.cost_usd == pytest.approx(priced.cost_usd)
    # The canary of a failed probe still costs its own tokens.
    failed = price_probe(result(ok=False, error_kind=ErrorKind.HTTP_ERROR, http_status=502), SEED, extra=[canary])
    assert failed.cost_usd == pytest.approx(canary_usd)
    assert add_usage_cost(result(), None, canary).cost_usd is None


# --------------------------------------------------------------------------- live figures
def sample(minutes: int, cost: float | None, trigger: str = "scheduled", location: str = "local") -> ProbeSample:
    return ProbeSample(started_at=T0 + timedelta(minutes=minutes), ok=True, error_kind=None, ttft_s=0.2,
                       tokens_per_second=50.0, trigger=trigger, location=location, cost_usd=cost)


def test_live_cost_without_priced_probes_is_null():
    assert endpoint_cost([], interval_s=1800) == endpoint_cost([sample(0, None)], interval_s=1800)
    assert endpoint_cost([sample(0, None)], interval_s=1800).cost_usd_per_month is None


def test_live_cost_per_probe_is_the_mean_and_the_month_projects_the_interval():
    costs = endpoint_cost([sample(0, 1e-5), sample(30, 3e-5)], interval_s=1800)
    assert costs.cost_usd_per_probe == pytest.approx(2e-5)
    # 30 days / 30 min = 1,440 probes
    assert costs.cost_usd_per_month == pytest.approx(2e-5 * 1440)
    assert MONTH_S / 1800 == 1440


def test_live_cost_projection_adds_the_observed_confirm_rate():
    # 4 scheduled + 2 confirm probes: confirm rate 0.5; every probe 1e-5
    samples = [sample(i * 30, 1e-5) for i in range(4)] + [sample(31, 1e-5, "confirm"), sample(32, 1e-5, "confirm")]
    assert endpoint_cost(samples, interval_s=1800).cost_usd_per_month == pytest.approx(1e-5 * 1440 * 1.5)
    # Manual probes are in the mean but not in the projection's rate.
    with_manual = [*samples, sample(40, 7e-5, "manual")]
    costs = endpoint_cost(with_manual, interval_s=1800)
    assert costs.cost_usd_per_probe == pytest.approx(13e-5 / 7)
    assert costs.cost_usd_per_month == pytest.approx(13e-5 / 7 * 1440 * 1.5)


def test_live_cost_projection_counts_every_location_probing_the_endpoint():
    samples = [sample(0, 1e-5, location="a"), sample(1, 1e-5, location="b"), sample(30, 1e-5, location="a")]
    assert endpoint_cost(samples, interval_s=1800).cost_usd_per_month == pytest.approx(1e-5 * 1440 * 2)


# --------------------------------------------------------------------------- check-config
def endpoint(provider: str, price: Price | None, **settings) -> EndpointConfig:
    return EndpointConfig(provider=provider, protocol="openai", base_url="http://x/v1", model="m", price=price, **settings)


def test_catalog_projection_per_model_and_total():
    catalog = Catalog(
        models=(
            ModelConfig(id="a", name="A", endpoints=(endpoint("P", SEED), endpoint("Q", None))),
            ModelConfig(id="b", name="B", endpoints=(
                endpoint("R", Price(input_per_mtok=1.0, output_per_mtok=2.0), interval_s=3600, input_tokens=1000, max_tokens=100),
            )),
            ModelConfig(id="c", name="C", endpoints=(endpoint("S", None),)),
        ),
        budget_per_month=1.0,
    )
    projection = catalog_projection(catalog)
    a, b, c = projection.models
    # a/P: (100 x 0.027 + 128 x 0.201) / 1e6 x 1,440 = 0.040936...
    assert a.cost_usd_per_month == pytest.approx(28.428e-6 * 1440) and a.unpriced_endpoints == ("Q",)
    # b/R: (1000 x 1 + 100 x 2) / 1e6 x 720 = 0.864
    assert b.cost_usd_per_month == pytest.approx(0.864)
    assert c.cost_usd_per_month is None
    assert projection.total_usd_per_month == pytest.approx(0.864 + 28.428e-6 * 1440)
    assert not projection.over_budget  # $0.905 against a $1 budget
    lines, warning = projection_lines(projection)
    assert warning is None
    assert lines[1:] == [
        "  a: $0.041/month (no price: Q)",
        "  b: $0.86/month",
        "  c: no price",
        "  total: $0.90/month (budget_per_month $1.00)",
    ]
    over = catalog_projection(catalog.model_copy(update={"budget_per_month": 0.5}))
    assert over.over_budget
    assert projection_lines(over)[1] == "projected probe cost $0.90/month is above budget_per_month $0.50"


def test_format_usd():
    assert format_usd(0.023) == "$0.023"
    assert format_usd(0.040936) == "$0.041"
    assert format_usd(0.000012) == "$0.000012"
    assert format_usd(12.345) == "$12.35"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0) == "$0.00"


def check_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "endpoints.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "monitor", "check-config", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


CONFIG = """
budget_per_month: {budget}
defaults: {{interval: 30m, max_tokens: 128}}
models:
  - id: meta-llama/llama-3.2-1b-instruct
    endpoints:
      - {{provider: Cheap, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: m,
          price: {{input_per_mtok: 0.027, output_per_mtok: 0.201}}}}
      - {{provider: Unpriced, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: m}}
  - id: big/model
    endpoints:
      - {{provider: Dear, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: m, interval: 1m,
          input_tokens: 10000, price: {{input_per_mtok: 3, output_per_mtok: 15}}}}
"""


def test_check_config_prints_the_monthly_cost_per_model_and_total(tmp_path):
    proc = check_config(tmp_path, CONFIG.format(budget=1000))
    assert proc.returncode == 0, proc.stderr
    # Dear: (10,000 x 3 + 128 x 15) / 1e6 = $0.03192 a probe, 43,200 probes a month = $1,378.94
    assert "  meta-llama/llama-3.2-1b-instruct: $0.041/month (no price: Unpriced)\n" in proc.stdout
    assert "  big/model: $1,378.94/month\n" in proc.stdout
    assert "  total: $1,378.98/month (budget_per_month $1,000.00)\n" in proc.stdout
    assert "warning: projected probe cost $1,378.98/month is above budget_per_month $1,000.00" in proc.stderr


def test_check_config_within_budget_has_no_budget_warning(tmp_path):
    proc = check_config(tmp_path, CONFIG.format(budget=2000))
    assert proc.returncode == 0 and "budget" not in proc.stderr
    assert "total: $1,378.98/month" in proc.stdout


# --------------------------------------------------------------------------- runner, over sockets
@pytest.fixture
def provider():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        server.route("POST", "/v1/chat/completions",
                     lambda _r: sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=20)))
        server.route("POST", "/broken/v1/chat/completions", json_response(500, {"error": {"message": "no"}}))
        server.route("GET", "/broken/v1/models", json_response(200, {"data": []}))
        yield server


async def test_runner_prices_every_probe_before_it_is_recorded(provider):
    model = ModelConfig(id="m/1", name="M", endpoints=(
        endpoint("Priced", SEED).model_copy(update={"base_url": provider.url + "/v1"}),
        endpoint("Unpriced", None).model_copy(update={"base_url": provider.url + "/v1"}),
        endpoint("Broken", SEED).model_copy(update={"base_url": provider.url + "/broken/v1"}),
    ))
    catalog = Catalog(models=(model,))
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    store = InMemoryStore()
    live = LiveFigures(catalog, window_s=86400, interval_of=lambda e: 1800.0)
    buffer = ResultBuffer(store, metrics, capacity=100)
    async with httpx.AsyncClient() as client:
        runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=4)
        for e in model.endpoints:
            metrics.set_endpoint_interval(model.id, e.provider, 1800)
        priced = await runner.probe_endpoint(model, model.endpoints[0])
        confirm = await runner.probe_endpoint(model, model.endpoints[0], trigger=Trigger.CONFIRM)
        unpriced = await runner.probe_endpoint(model, model.endpoints[1])
        broken = await runner.probe_endpoint(model, model.endpoints[2])
    assert await buffer.flush()
    # 20 output tokens and 12 prompt tokens, both from the stream's usage (openai_stream reports
    # prompt_tokens 12; the probe reads it since the canary work)
    expected = (12 * 0.027 + 20 * 0.201) / 1e6
    assert priced.ok and priced.output_tokens == 20 and priced.cost_usd == pytest.approx(expected)
    assert confirm.cost_usd == pytest.approx(expected)
    assert unpriced.ok and unpriced.cost_usd is None
    assert not broken.ok and broken.cost_usd == 0.0
    # Stored as priced
    stored = sorted((r.trigger.value, r.cost_usd) for r in await store.recent_results("m/1", "Priced", 10))
    assert stored == [("confirm", pytest.approx(expected)), ("scheduled", pytest.approx(expected))]
    # Counted in metrics (0 for the unpriced endpoint) and projected in the live figures
    value = registry.get_sample_value
    assert value("llm_probe_cost_usd_total", {"model": "m/1", "provider": "Priced"}) == pytest.approx(2 * expected)
    assert value("llm_probe_cost_usd_total", {"model": "m/1", "provider": "Unpriced"}) == 0.0
    figures = {e.provider: e for e in live.model("m/1").endpoints}
    assert figures["Priced"].cost_usd_per_probe == pytest.approx(expected)
    # 1 scheduled + 1 confirm: confirm rate 1, so twice the scheduled month
    assert figures["Priced"].cost_usd_per_month == pytest.approx(expected * 1440 * 2)
    assert figures["Unpriced"].cost_usd_per_month is None
    assert value("llm_endpoint_cost_usd_per_month", {"model": "m/1", "provider": "Priced"}) == pytest.approx(expected * 2880)
    assert value("llm_endpoint_cost_usd_per_month", {"model": "m/1", "provider": "Unpriced"}) is None
