"""What counts as a credential written into the config file, which only ever names variables.

A key-like field name (`api_key`, `token`, `Authorization`, ...) anywhere in an endpoint, user
info or a key-like query parameter in a URL: each is refused, and no message repeats its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Compared lower-case without - and _.
_SECRET_FIELD_NAMES = frozenset(
    {"key", "apikey", "token", "apitoken", "accesstoken", "authtoken", "bearer", "bearertoken",
     "secret", "clientsecret", "password", "passwd", "authorization", "auth", "xapikey",
     "xgoogapikey", "credentials"}
)
_SECRET_FIELD_SUFFIXES = ("apikey", "secret", "password", "accesstoken", "apitoken", "authtoken")

INLINE_SECRET_MESSAGE = (
    "keys may not be written in the config file; put the key in an environment variable "
    "and name that variable with api_key_env"
)


def is_secret_field(name: object) -> bool:
    if not isinstance(name, str):
        return False
    folded = name.lower().replace("-", "").replace("_", "")
    return folded in _SECRET_FIELD_NAMES or folded.endswith(_SECRET_FIELD_SUFFIXES)


def find_secret_field(value: object, loc: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Location (keys and list indexes) of the first key-like field name nested in `value`."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_field(key):
                return (*loc, key)
            found = find_secret_field(item, (*loc, key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_secret_field(item, (*loc, index))
            if found:
                return found
    return None


def url_credential_problem(url: str) -> str | None:
    """Why `url` (already a valid http(s) URL) carries a credential, or None."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return f"credentials in the URL are not allowed; {INLINE_SECRET_MESSAGE}"
    if any(is_secret_field(name) for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return f"a key in the URL query is not allowed; {INLINE_SECRET_MESSAGE}"
    return None
