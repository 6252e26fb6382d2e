"""How the catalog reports what is wrong: one line per problem, `field.path: message (line N)`.

Owns `CatalogError`, the wording of pydantic's errors, the cross-entry checks (duplicate model
ids and providers) and `catalog_warnings` (endpoints whose probes will fail with config_error).
No message repeats a value that could be a secret: pydantic's input values are never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor.catalog.credentials import INLINE_SECRET_MESSAGE, is_secret_field
from monitor.catalog.models import Catalog
from monitor.catalog.schema import PLAIN_MESSAGES, OptionProblems, show, spec_at

# ((line, sequence-for-stable-order), message)
Problem = tuple[tuple[int, int], str]


class CatalogError(ValueError):
    """The catalog cannot be used. `str(error)` is one line per problem, each naming its field.

    `problems` holds the same lines; `source` is the file path (or the name given to
    `parse_catalog`). Messages never contain a value that could be a secret.
    """

    def __init__(self, problems: Sequence[str], *, source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


def format_loc(loc: Sequence[Any]) -> str:
    """("models", 0, "id") -> "models[0].id"."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(path: str, lines: Mapping[str, int]) -> int:
    """Line of `path`, or of its nearest ancestor that is in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("", 0)


def _problem(path: str, message: str, lines: Mapping[str, int]) -> Problem:
    line = line_of(path, lines)
    suffix = f" (line {line})" if line else ""
    return (line, 0), f"{path or '(top level)'}: {message}{suffix}"


def describe(error: Mapping[str, Any], lines: Mapping[str, int]) -> list[Problem]:
    """One pydantic error -> its problem lines (an options error may hold several)."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "value_error" and isinstance(error["ctx"]["error"], OptionProblems):
        return [_problem(format_loc((*loc, *sub)), message, lines)
                for sub, message in error["ctx"]["error"].items]
    if kind == "extra_forbidden":
        if is_secret_field(loc[-1]):
            message = INLINE_SECRET_MESSAGE
        else:
            owner = spec_at(loc[:-1])
            message = f"unknown key (expected one of {', '.join(owner.model_fields)})" if owner else "unknown key"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "greater_than_equal":
        message = f"must be at least {error['ctx']['ge']}"
    elif kind == "less_than_equal":
        message = f"must be at most {error['ctx']['le']}"
    elif loc and loc[-1] == "[key]":
        message = "keys must be strings"
    else:
        message = PLAIN_MESSAGES.get(kind, error["msg"])
    return [_problem(format_loc(loc), message, lines)]


def unknown_references(spec: Any, lines: Mapping[str, int]) -> list[Problem]:
    """Maintenance windows naming a model or provider that the catalog does not have (a typo
    would otherwise silently cover nothing)."""
    problems: list[Problem] = []
    providers = {model.id: {e.provider for e in model.endpoints} for model in spec.models}
    every_provider = set().union(*providers.values()) if providers else set()
    for index, window in enumerate(spec.maintenance):
        if window.model is not None and window.model not in providers:
            problems.append(_problem(f"maintenance[{index}].model", f"unknown model {show(window.model, 80)}", lines))
            continue
        known = providers[window.model] if window.model is not None else every_provider
        if window.provider is not None and window.provider not in known:
            where = f" for model {show(window.model, 80)}" if window.model is not None else ""
            problems.append(_problem(f"maintenance[{index}].provider",
                                     f"unknown provider {show(window.provider)}{where}", lines))
    return problems


def duplicates(data: Mapping[str, Any], lines: Mapping[str, int]) -> list[Problem]:
    """Duplicate model ids, and duplicate providers within a model (case-insensitively)."""
    problems: list[Problem] = []
    models = data.get("models")
    if not isinstance(models, list):
        return problems
    first_model: dict[str, int] = {}
    for m_index, model in enumerate(models):
        if not isinstance(model, dict):
            continue
        model_id = model.get("id")
        if isinstance(model_id, str):
            if model_id in first_model:
                problems.append(_problem(
                    f"models[{m_index}].id",
                    f"duplicate model id {show(model_id, 80)} (first at models[{first_model[model_id]}])", lines))
            else:
                first_model[model_id] = m_index
        endpoints = model.get("endpoints")
        if not isinstance(endpoints, list):
            continue
        first_provider: dict[str, int] = {}
        for e_index, endpoint in enumerate(endpoints):
            provider = endpoint.get("provider") if isinstance(endpoint, dict) else None
            if not isinstance(provider, str):
                continue
            folded = provider.strip().casefold()
            if folded in first_provider:
                problems.append(_problem(
                    f"models[{m_index}].endpoints[{e_index}].provider",
                    f"duplicate provider {show(provider)} in this model "
                    f"(first at endpoints[{first_provider[folded]}])", lines))
            else:
                first_provider[folded] = e_index
    return problems


def catalog_warnings(catalog: Catalog, environ: Mapping[str, str]) -> list[str]:
    """One line per endpoint whose probes will fail with config_error, and why (names only)."""
    warnings = []
    for model, endpoint in catalog.endpoints():
        error = endpoint.to_target(environ).config_error
        if error:
            warnings.append(f"{model.id} via {endpoint.provider}: {error} (probes will fail with config_error)")
    return warnings
