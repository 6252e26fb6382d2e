"""Reading the catalog: file -> YAML nodes -> specs -> the immutable models.

Every mistake found is reported together as one `CatalogError`, one line per problem. The file
itself is bounded before any YAML is parsed, so a hostile or careless file costs at most a few
seconds and a few hundred MB, never the process:
- at most `MAX_CONFIG_BYTES` (2 MiB; a catalog of 10,000 endpoints is about 1.3 MB), and only a
  regular file (or a symlink to one): a device, FIFO or directory is refused unread;
- YAML aliases (`*name`) are refused: a few hundred bytes of aliases can expand to billions of
  nodes, and a catalog has no need for them (anchors alone are harmless and allowed);
- nesting deeper than `MAX_DEPTH` levels is refused (a catalog needs about eight);
- duplicate mapping keys are reported (PyYAML would silently keep the last).
Each of these is one line naming the file and the place. No event loop is used: `load_catalog`
may run in a worker thread (`asyncio.to_thread`) while the service keeps serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.catalog.diagnostics import CatalogError, Problem, describe, duplicates, unknown_references
from monitor.catalog.files import FileRefused, read_bounded
from monitor.catalog.models import (
    BUILTIN_LIVENESS_S,
    Catalog,
    Defaults,
    EndpointConfig,
    EndpointSettings,
    MaintenanceWindow,
    ModelConfig,
    Price,
    Retention,
)
from monitor.catalog.schema import CatalogSpec, EndpointSettingsSpec
from monitor.probes.registry import PROTOCOLS

MAX_CONFIG_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; CatalogError (naming the path) when it cannot be used."""
    source = str(path)

    def refuse(reason: str) -> CatalogError:
        return CatalogError([f"{source}: {reason}"], source=source)

    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise refuse("file not found") from None
    except FileRefused as exc:
        raise refuse(f"cannot read: {exc}") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<string>") -> Catalog:
    """Validate catalog YAML text. `source` names it in file-level messages."""
    data, lines, problems = _read_yaml(text, source)
    if data is None:
        problems.append(((0, 0), f"{source}: the catalog is empty (expected a 'models' list)"))
    elif not isinstance(data, dict):
        problems.append(((0, 0), f"{source}: expected a mapping with the keys defaults, models at the top level"))
    else:
        spec: CatalogSpec | None = None
        try:
            spec = CatalogSpec.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                problems.extend(describe(error, lines))
        problems.extend(duplicates(data, lines))
        if spec is not None:
            problems.extend(unknown_references(spec, lines))
        if not problems and spec is not None:
            return _build(spec)
    ordered = [message for _, message in sorted(problems, key=lambda p: p[0])]
    raise CatalogError(list(dict.fromkeys(ordered)), source=source)


class _Refused(Exception):
    """A structure the catalog does not accept, found while composing (message, line)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no arbitrary objects), composing nodes first so their lines are
    known, refusing aliases and deep nesting as it goes (before anything is expanded)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused("YAML aliases are not allowed", event.start_mark.line + 1)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels is not allowed", event.start_mark.line + 1)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_yaml(text: str, source: str) -> tuple[Any, dict[str, int], list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[str, int] = {}
        problems: list[Problem] = []
        _walk(node, "", lines, problems)
        try:
            data = loader.construct_document(node)
        except ValueError:
            # int() refusing thousands of digits, an impossible date: the value is not shown.
            raise CatalogError([f"{source}: a value cannot be read (a number with too many digits, "
                                "or an impossible date)"], source=source) from None
        return data, lines, problems
    except _Refused as exc:
        raise CatalogError([f"{source}: {exc} (line {exc.line})"], source=source) from None
    except yaml.MarkedYAMLError as exc:
        # Built from the parts rather than str(exc): PyYAML's own text quotes the offending
        # source line, which could be one that holds a key.
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ": ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise CatalogError([f"{source}: {where}YAML syntax error: {what}"], source=source) from None
    except yaml.YAMLError as exc:
        raise CatalogError([f"{source}: YAML error: {exc}"], source=source) from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: str, lines: dict[str, int], problems: list[Problem]) -> None:
    """Record the line of every field path, and flag duplicate keys (PyYAML keeps the last)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key != "<<" and key in seen:
                line = key_node.start_mark.line + 1
                problems.append(((line, len(problems)), f"{child}: duplicate key (line {line})"))
            seen.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", lines, problems)


def _settings(spec: EndpointSettingsSpec, base: EndpointSettings) -> dict[str, Any]:
    """The EndpointSettings fields: what `spec` sets, else `base`'s."""
    liveness = base.liveness_interval_s
    if spec.liveness is not None:
        if not spec.liveness.enabled:
            liveness = None
        elif spec.liveness.interval is not None:
            liveness = spec.liveness.interval
        elif liveness is None:
            liveness = BUILTIN_LIVENESS_S
    confirm = spec.confirm
    price = spec.price
    return {
        "interval_s": spec.interval or base.interval_s,
        "timeout_s": spec.timeout or base.timeout_s,
        "max_tokens": spec.max_tokens or base.max_tokens,
        "liveness_interval_s": liveness,
        "confirm_interval_s": (confirm.interval if confirm else None) or base.confirm_interval_s,
        "confirm_failures": (confirm.failures if confirm else None) or base.confirm_failures,
        "quorum": base.quorum if spec.quorum is None else (None if spec.quorum == "majority" else spec.quorum),
        "degraded_ttft_s": spec.degraded_ttft or base.degraded_ttft_s,
        "input_tokens": spec.input_tokens or base.input_tokens,
        "price": Price(input_per_mtok=price.input_per_mtok, output_per_mtok=price.output_per_mtok)
        if price is not None else base.price,
        "checks": tuple(spec.checks) if spec.checks is not None else base.checks,
        "answer_ok_min": base.answer_ok_min if spec.answer_ok_min is None else spec.answer_ok_min,
        "keep_cold_starts": base.keep_cold_starts if spec.keep_cold_starts is None else spec.keep_cold_starts,
    }


def _build(spec: CatalogSpec) -> Catalog:
    """Apply defaults (file's, then built-in) and build the public immutable models."""
    builtin = Retention()
    raw_s = builtin.raw_s
    hourly_s = builtin.hourly_s
    if spec.defaults.retention is not None:
        raw_s = spec.defaults.retention.raw or raw_s
        # Hourly roll-ups outlive raw probes, also when only `raw` was raised.
        hourly_s = spec.defaults.retention.hourly or max(hourly_s, raw_s)
    defaults = Defaults(**_settings(spec.defaults, EndpointSettings()),
                        retention=Retention(raw_s=raw_s, hourly_s=hourly_s))
    models = tuple(
        ModelConfig(
            id=model.id,
            name=model.name if model.name is not None else model.id,
            endpoints=tuple(
                EndpointConfig(
                    provider=endpoint.provider,
                    protocol=endpoint.protocol,
                    base_url=endpoint.base_url,
                    model=endpoint.model,
                    api_key_env=endpoint.api_key_env,
                    options=_protocol_options(endpoint.protocol, endpoint.options),
                    **_settings(endpoint, defaults),
                )
                for endpoint in model.endpoints
            ),
        )
        for model in spec.models
    )
    maintenance = tuple(
        MaintenanceWindow(
            start=window.start, end=window.end, model=window.model, provider=window.provider,
            location=window.location, reason=window.reason,
        )
        for window in spec.maintenance
    )
    return Catalog(defaults=defaults, models=models, maintenance=maintenance,
                   budget_per_month=spec.budget_per_month)


def _protocol_options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as the protocol's model reads them, only the keys the file set (so an
    option set to null stays distinct from one left out)."""
    model = PROTOCOLS[protocol].options_model
    return model.model_validate(options, strict=True).model_dump(exclude_unset=True)
