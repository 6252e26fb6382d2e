"""Prebuilt HTTP bodies for the pages and badges: strong ETag, Cache-Control, gzip once.

A `Body` is built once per content (a badge once per figures version, the stylesheet once per
process) and answered from bytes: `If-None-Match` gives 304 and a client that takes gzip gets
the body compressed once. The security-header pass (`api.middleware`) runs on the way out and
marks the ETag of the gzip form, so both codings have distinct strong validators, as on /live.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Callable, Hashable

from fastapi import Request, Response

from api.caching import Reply, matching_tag, not_modified_headers, strong_etag, validator_headers
from api.middleware import hardened_headers

GZIP_MINIMUM_BYTES = 500


@dataclass(frozen=True)
class Body:
    body: bytes
    etag: str
    headers: tuple[tuple[bytes, bytes], ...]
    gzip_body: bytes | None
    gzip_headers: tuple[tuple[bytes, bytes], ...]
    max_age_s: int
    cache_control: str
    # The same headers after the security-header pass (what the middleware stack would send),
    # for the fast path (api.pages.fast_path), which answers in front of that stack.
    hardened: tuple[tuple[bytes, bytes], ...] = ()
    gzip_hardened: tuple[tuple[bytes, bytes], ...] = ()

    def reply(self, *, if_none_match: str | None, accept_encoding: str | None) -> Reply:
        """The finished reply, as the route answers it through the middleware stack."""
        matched = matching_tag(if_none_match, self.etag)
        if matched is not None:
            headers = {**not_modified_headers(matched, self.max_age_s), "Cache-Control": self.cache_control}
            return Reply(304, hardened_headers(_raw(headers)), b"")
        if self.gzip_body is not None and "gzip" in (accept_encoding or ""):
            return Reply(200, self.gzip_hardened, self.gzip_body)
        return Reply(200, self.hardened, self.body)


def build(body: bytes, *, content_type: str, max_age_s: int, cache_control: str | None = None,
          headers: dict[str, str] | None = None) -> Body:
    etag = strong_etag(body)
    base = {"content-type": content_type, "etag": etag, **validator_headers(max_age_s), **(headers or {})}
    if cache_control is not None:
        base["Cache-Control"] = cache_control
    plain = {**base, "content-length": str(len(body))}
    gzip_body = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MINIMUM_BYTES else None
    zipped = {**base, "content-length": str(len(gzip_body)), "content-encoding": "gzip"} if gzip_body else {}
    return Body(body, etag, _raw(plain), gzip_body, _raw(zipped), max_age_s, base["Cache-Control"],
                hardened_headers(_raw(plain)), hardened_headers(_raw(zipped)) if gzip_body else ())


def _raw(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


def respond(request: Request, built: Body, *, extra: dict[str, str] | None = None) -> Response:
    """200 with the prebuilt body (gzip when the client takes it), or 304 when current."""
    response = Response.__new__(Response)  # skip per-request header encoding
    response.background = None
    matched = matching_tag(request.headers.get("if-none-match"), built.etag)
    if matched is not None:
        response.status_code = 304
        response.body = b""
        headers = {**not_modified_headers(matched, built.max_age_s), "Cache-Control": built.cache_control, **(extra or {})}
        response.raw_headers = list(_raw(headers))
        return response
    response.status_code = 200
    if built.gzip_body is not None and "gzip" in request.headers.get("accept-encoding", ""):
        response.body = built.gzip_body
        response.raw_headers = list(built.gzip_headers)
    else:
        response.body = built.body
        response.raw_headers = list(built.headers)
    if extra:
        response.raw_headers.extend(_raw(extra))
    return response


@dataclass
class VersionedCache:
    """Bodies keyed by name, valid while the source object (e.g. a model's immutable figures)
    is the same object; bounded so that a crawl over every model and metric cannot grow it
    past `limit` entries."""

    limit: int = 20000
    _entries: dict[Hashable, tuple[object, str, Body]] = field(default_factory=dict)

    def get(self, key: Hashable, source: object, render: Callable[[], Body], *, text: str = "") -> Body:
        """The body for `key` while `source` is the same object, or the same string when it is
        one (e.g. the ETag of the figures' /live body), and `text` (e.g. a relative time shown
        in it) is the same string; rendered anew otherwise."""
        entry = self._entries.get(key)
        if entry is not None and (entry[0] is source or (isinstance(source, str) and entry[0] == source)) \
                and entry[1] == text:
            return entry[2]
        built = render()
        if len(self._entries) >= self.limit and key not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (source, text, built)
        return built
