"""Turning configured values into a `ProbeTarget`: the one resolver for the catalog and the CLI.

Owns the `${VAR}` template syntax (checked for form by the schema, expanded here) and the API
key lookup. `resolve_target` never raises for a missing or unusable variable: the target then
carries `config_error` (naming variables, never their values) and the probe fails with that
outcome without touching the network.

Keys: from `$NAME`, else from the file named by `$NAME_FILE` (Docker/Kubernetes secrets). One
trailing line break is dropped (files usually end with one) and surrounding spaces and tabs are
trimmed; what remains must be one line of visible ASCII, since it is sent in an HTTP header. A
second line, a control character or a non-ASCII character is a `config_error`, so a two-line
secret file never reaches the network.

Values that `${VAR}` placeholders expanded to (an account id in the URL, a deployment name) go
into `ProbeTarget.redact`, so a provider that echoes them back cannot leak them into stored
errors; values shorter than `MIN_REDACT_CHARS` (a port, a scheme) are not worth scrubbing and
would mangle ordinary text.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from monitor.catalog.credentials import url_credential_problem
from monitor.catalog.files import FileRefused, read_bounded
from monitor.probes.base import DEFAULT_INPUT_TOKENS, ProbeTarget, Secret
from monitor.probes.urls import http_url_problem

# Environment variable names: conventional upper-case shell names. Requiring upper case also
# catches the commonest mistake, pasting the key itself where its variable name belongs.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
PLACEHOLDER = re.compile(r"\$\{(?P<name>[^}]*)\}")
_BARE_DOLLAR_NAME = re.compile(r"\$[A-Za-z_]")
# A key file is a few hundred bytes at most; anything larger is not a key file.
MAX_KEY_FILE_BYTES = 64 * 1024
MIN_REDACT_CHARS = 4


def template_variables(template: str) -> tuple[str, ...]:
    """Names of the `${VAR}` placeholders in a template; ValueError when one is malformed."""
    names = []
    for match in PLACEHOLDER.finditer(template):
        name = match["name"]
        if not ENV_NAME.fullmatch(name):
            # The text inside is not echoed: it might be a pasted secret.
            raise ValueError(
                "invalid environment variable name in a ${...} placeholder "
                "(use upper-case letters, digits and _, not starting with a digit)"
            )
        names.append(name)
    rest = PLACEHOLDER.sub("", template)
    if "${" in rest:
        raise ValueError("unterminated '${' placeholder")
    if _BARE_DOLLAR_NAME.search(rest):
        raise ValueError("a bare $NAME is not expanded; write ${NAME}")
    return tuple(names)


def opaque_url(template: str) -> str:
    """`template` with each `${VAR}` swapped for a stand-in valid where it stands, so a static
    check judges only the literal text: a whole base URL (or its scheme) at the start, a port
    right after `host:`, plain text anywhere else. The expanded URL is checked again by
    `resolve_target` (an invalid value then gives config_error)."""

    def stand_in(match: re.Match[str]) -> str:
        before = template[: match.start()]
        if not before:
            return "http" if template[match.end():].startswith("://") else "http://placeholder"
        _, sep, authority = before.partition("://")
        if sep and before.endswith(":") and "/" not in authority:
            return "1"
        return "placeholder"

    return PLACEHOLDER.sub(stand_in, template)


def resolve_target(
    *,
    protocol: str,
    base_url: str,
    model: str,
    api_key_env: str | None,
    max_tokens: int,
    timeout_s: float,
    options: Mapping[str, Any],
    environ: Mapping[str, str],
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    checks: tuple[str, ...] = ("answer",),
) -> ProbeTarget:
    """The probe target for these settings in `environ`. `base_url` and `model` are templates."""
    problems: list[str] = []
    expanded: list[str] = []
    url = _expand(base_url, environ, problems, expanded)
    model_name = _expand(model, environ, problems, expanded)
    if not problems:
        if http_url_problem(url):
            # After expansion the reason is not shown: it could hint at the value.
            problems.append("base_url is not a valid http(s) URL"
                            + (" after expanding environment variables" if expanded else ""))
        elif problem := url_credential_problem(url):
            where = "base_url after expanding environment variables" if expanded else "base_url"
            problems.append(f"{where}: {problem}")
    api_key = read_api_key(api_key_env, environ, problems) if api_key_env else None
    redact = tuple(Secret(value) for value in dict.fromkeys(expanded) if len(value) >= MIN_REDACT_CHARS)
    return ProbeTarget(
        protocol=protocol,
        base_url=url.rstrip("/"),
        model=model_name,
        api_key=api_key,
        api_key_env=api_key_env,
        config_error="; ".join(problems) or None,
        max_tokens=max_tokens,
        timeout_s=timeout_s,
        # The connect and stall bounds never exceed the whole probe's.
        connect_timeout_s=min(ProbeTarget.connect_timeout_s, timeout_s),
        stall_timeout_s=min(ProbeTarget.stall_timeout_s, timeout_s),
        options=_plain(options),
        redact=redact,
        input_tokens=input_tokens,
        checks=tuple(checks),
    )


def _expand(template: str, environ: Mapping[str, str], problems: list[str], expanded: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match["name"]
        value = environ.get(name)
        if value is None:
            problems.append(f"environment variable {name} is not set")
            return match.group(0)
        if not value.strip():
            problems.append(f"environment variable {name} is empty")
            return match.group(0)
        expanded.append(value.strip())
        return value.strip()

    return PLACEHOLDER.sub(substitute, template)


def read_api_key(name: str, environ: Mapping[str, str], problems: list[str]) -> Secret | None:
    """The key from $NAME, else from the file named by $NAME_FILE; None (and a problem) when
    neither gives a usable key."""
    value = environ.get(name, "")
    if value.strip():
        return _checked_key(value, f"environment variable {name}", problems)
    file_var = f"{name}_FILE"
    key_path = environ.get(file_var, "").strip()
    if not key_path:
        state = "is empty" if name in environ else "is not set"
        problems.append(f"environment variable {name} {state} (nor {file_var})")
        return None
    source = f"the key file named by {file_var}"
    try:
        text = read_bounded(key_path, MAX_KEY_FILE_BYTES).decode("utf-8")
    except FileRefused as exc:
        problems.append(f"cannot read {source}: {exc}")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problems.append(f"cannot read {source}: {reason}")
        return None
    if not text.strip():
        problems.append(f"{source} is empty")
        return None
    return _checked_key(text, source, problems)


def _checked_key(raw: str, source: str, problems: list[str]) -> Secret | None:
    """One trailing line break dropped, spaces and tabs trimmed; then visible ASCII or refused.
    Messages name `source`, never the value."""
    if raw.endswith("\r\n"):
        raw = raw[:-2]
    elif raw.endswith("\n"):
        raw = raw[:-1]
    key = raw.strip(" \t")
    if "\n" in key or "\r" in key:
        problems.append(f"the key in {source} has more than one line "
                        "(only one trailing line break is allowed)")
        return None
    if not all("!" <= ch <= "~" for ch in key):
        problems.append(f"the key in {source} contains a space, control or non-ASCII character "
                        "(a key is sent in an HTTP header: visible ASCII only)")
        return None
    return Secret(key)


def _plain(value: Any) -> Any:
    """Plain dicts/lists again (JSON-serialisable), a copy the probe may not share."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return copy.deepcopy(value)
