"""Cost accounting: what each probe cost, what an endpoint's probing costs per month, and the
catalog's projected monthly cost that `check-config` prints. Pure functions, no I/O, no clocks.

Definitions (README "Cost" section; docs/cost.md):
- a probe's `cost_usd` = price.input x input tokens + price.output x output tokens (USD per 1M
  tokens), where input tokens are the provider-reported `prompt_tokens` when it sent them, else
  the workload profile's `input_tokens` (the size the prompt was padded to), and output tokens
  are the probe's `output_tokens` (usage, or the event-count estimate). `None` without a price.
- a request the provider never answered with a 2xx (DNS/connect/TLS errors, 4xx/5xx, a timeout
  before the response head, `config_error`) is billed nothing: `cost_usd` = 0.0 with a price.
  A stream that broke after the head is billed for what it reported.
- the warm-up request (`GET /models`) and liveness checks are not inference: zero.
- extra requests merged into the probe (the tool-call canary) add their own usage through
  `price_probe(..., extra=[Usage(...)])` or, once the probe is priced, `add_usage_cost`.
- `cost_usd_per_probe` (live figures) = mean `cost_usd` over the window's priced probes, every
  trigger included (scheduled, confirm, manual).
- `cost_usd_per_month` = cost_usd_per_probe x scheduled probes per month x (1 + confirm rate),
  with scheduled probes per month = MONTH_S / interval x the number of locations that ran
  scheduled probes in the window (at least 1), and confirm rate = confirm probes / scheduled
  probes in the window (0 with no scheduled probe). Manual probes are one-offs: not projected.
- `catalog_projection` (check-config) estimates every probe at input_tokens + max_tokens, one
  location, scheduled probes only (confirmations happen only during outages).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

from monitor.probes.base import ErrorKind, ProbeResult, Trigger

if TYPE_CHECKING:
    from monitor.catalog.models import Catalog, EndpointConfig
    from monitor.stats import ProbeSample

# A month for projections: 30 days.
MONTH_S = 30 * 86400.0


class PriceLike(Protocol):
    def cost_usd(self, input_tokens: int, output_tokens: int) -> float: ...


@dataclass(frozen=True)
class Usage:
    """Tokens of one extra request merged into a probe (e.g. the tool-call canary)."""

    prompt_tokens: int
    output_tokens: int


def billed(result: ProbeResult) -> bool:
    """Whether the provider ran inference for this request: it answered with a 2xx head."""
    if result.error_kind == ErrorKind.CONFIG_ERROR:
        return False
    return result.http_status is not None and 200 <= result.http_status < 300


def _tokens(value: object) -> int:
    # Hostile or missing counts cost nothing rather than raising (sanitize bounds them already).
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def probe_cost_usd(result: ProbeResult, price: PriceLike | None, extra: Iterable[Usage] = ()) -> float | None:
    """The probe's cost in USD (see the module docstring); None without a price."""
    if price is None:
        return None
    cost = 0.0
    if billed(result):
        prompt = result.prompt_tokens if result.prompt_tokens is not None else result.input_tokens
        cost += price.cost_usd(_tokens(prompt), _tokens(result.output_tokens))
    for usage in extra:
        cost += price.cost_usd(_tokens(usage.prompt_tokens), _tokens(usage.output_tokens))
    return cost


def price_probe(result: ProbeResult, price: PriceLike | None, extra: Iterable[Usage] = ()) -> ProbeResult:
    """The result with `cost_usd` set. Called once per probe, in `Runner.probe_endpoint`,
    before the result is recorded (metrics, live figures, store)."""
    return dataclasses.replace(result, cost_usd=probe_cost_usd(result, price, extra))


def add_usage_cost(result: ProbeResult, price: PriceLike | None, usage: Usage) -> ProbeResult:
    """The hook for a request merged after pricing (the tool-call canary): its tokens are added
    to `cost_usd`. Without a price the cost stays None."""
    if price is None:
        return result
    extra = price.cost_usd(_tokens(usage.prompt_tokens), _tokens(usage.output_tokens))
    return dataclasses.replace(result, cost_usd=(result.cost_usd or 0.0) + extra)


# --------------------------------------------------------------------------- live figures
@dataclass(frozen=True)
class EndpointCost:
    cost_usd_per_probe: float | None
    cost_usd_per_month: float | None


def endpoint_cost(samples: Sequence["ProbeSample"], *, interval_s: float) -> EndpointCost:
    """Cost figures of one endpoint over the window's samples (any order)."""
    priced = [s.cost_usd for s in samples if s.cost_usd is not None]
    if not priced:
        return EndpointCost(None, None)
    per_probe = math.fsum(priced) / len(priced)
    scheduled = [s for s in samples if s.trigger == Trigger.SCHEDULED.value]
    confirms = sum(1 for s in samples if s.trigger == Trigger.CONFIRM.value)
    confirm_rate = confirms / len(scheduled) if scheduled else 0.0
    locations = max(1, len({s.location for s in scheduled}))
    per_month = per_probe * (MONTH_S / interval_s) * locations * (1.0 + confirm_rate)
    return EndpointCost(per_probe, per_month)


# --------------------------------------------------------------------------- check-config
@dataclass(frozen=True)
class ModelProjection:
    model: str
    cost_usd_per_month: float | None  # None when none of its endpoints has a price
    unpriced_endpoints: tuple[str, ...]


@dataclass(frozen=True)
class CatalogProjection:
    models: tuple[ModelProjection, ...]
    total_usd_per_month: float
    budget_usd_per_month: float | None

    @property
    def over_budget(self) -> bool:
        return self.budget_usd_per_month is not None and self.total_usd_per_month > self.budget_usd_per_month


def endpoint_month_estimate(endpoint: "EndpointConfig", *, interval_s: float | None = None) -> float | None:
    """One endpoint's scheduled probes for a month, each at input_tokens + max_tokens."""
    if endpoint.price is None:
        return None
    per_probe = endpoint.price.cost_usd(endpoint.input_tokens, endpoint.max_tokens)
    return per_probe * MONTH_S / (interval_s or endpoint.interval_s)


def catalog_projection(catalog: "Catalog") -> CatalogProjection:
    models = []
    for model in catalog.models:
        costs, unpriced = [], []
        for endpoint in model.endpoints:
            estimate = endpoint_month_estimate(endpoint)
            if estimate is None:
                unpriced.append(endpoint.provider)
            else:
                costs.append(estimate)
        models.append(ModelProjection(model.id, math.fsum(costs) if costs else None, tuple(unpriced)))
    total = math.fsum(m.cost_usd_per_month for m in models if m.cost_usd_per_month is not None)
    return CatalogProjection(tuple(models), total, catalog.budget_per_month)


def format_usd(value: float) -> str:
    """`$12.35`, `$0.041`, `$0.000012`: two significant digits below one dollar, cents above."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(value)))
    return f"${value:.{decimals}f}"


def projection_lines(projection: CatalogProjection) -> tuple[list[str], str | None]:
    """(lines for stdout, the over-budget warning or None) as check-config prints them."""
    lines = ["projected probe cost (scheduled probes of one location, input_tokens + max_tokens each):"]
    for model in projection.models:
        if model.cost_usd_per_month is None:
            lines.append(f"  {model.model}: no price")
            continue
        note = f" (no price: {', '.join(model.unpriced_endpoints)})" if model.unpriced_endpoints else ""
        lines.append(f"  {model.model}: {format_usd(model.cost_usd_per_month)}/month{note}")
    total = f"  total: {format_usd(projection.total_usd_per_month)}/month"
    if projection.budget_usd_per_month is not None:
        total += f" (budget_per_month {format_usd(projection.budget_usd_per_month)})"
    lines.append(total)
    warning = None
    if projection.over_budget:
        assert projection.budget_usd_per_month is not None
        warning = (
            f"projected probe cost {format_usd(projection.total_usd_per_month)}/month is above "
            f"budget_per_month {format_usd(projection.budget_usd_per_month)}"
        )
    return lines, warning
