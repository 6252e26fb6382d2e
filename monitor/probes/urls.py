"""Whether a text is a base URL a probe can call: the one check the catalog, the probe CLI and
the engine share. Pure: no I/O. Messages never repeat the URL (it may hold an expanded value
from the environment); callers add it when they know it is safe to show.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def http_url_problem(url: str) -> str | None:
    """Why `url` is not an absolute http(s) URL with a host and a valid port, or None."""
    if any(ch.isspace() for ch in url):
        return "URL must not contain whitespace"
    if not url.isprintable():
        return "URL must not contain control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "malformed URL"
    if parts.scheme not in ("http", "https"):
        return "URL scheme must be http or https"
    if not parts.hostname:
        return "URL has no host"
    return None
