"""HTTP caching of JSON responses: strong ETag over the body, Cache-Control, If-None-Match -> 304.

The ETag is a hash of the exact bytes sent, so it changes whenever any figure changes. When the
gzip middleware compresses a body, `api.middleware` appends `-gzip` inside the tag (a strong
validator must differ between content codings); `If-None-Match` accepts either form.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Request, Response
from pydantic import BaseModel

from api.schemas import ModelLiveOut

GZIP_TAG_SUFFIX = "-gzip"


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def gzip_variant(etag: str) -> str:
    """The tag of the gzip-coded representation of the body tagged `etag`."""
    return etag[:-1] + GZIP_TAG_SUFFIX + '"'


def matching_tag(if_none_match: str | None, etag: str) -> str | None:
    """The client's tag that matches the current body (either coding), or None.

    If-None-Match uses the weak comparison (RFC 9110 13.1.2): a `W/` prefix is ignored.
    """
    if not if_none_match:
        return None
    current = {etag, gzip_variant(etag)}
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return etag
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag in current:
            return tag
    return None


@dataclass(frozen=True)
class Rendered:
    """A serialised body with its strong ETag and the raw headers of its 200 response, plus the
    gzip-coded form when the body is large enough to be worth compressing (compressed once per
    figures change instead of on every request)."""

    body: bytes
    etag: str
    raw_headers: tuple[tuple[bytes, bytes], ...]
    gzip_body: bytes | None = None
    gzip_raw_headers: tuple[tuple[bytes, bytes], ...] = ()


class RenderedBodies:
    """Serialised bodies (and their ETags) of live figures, keyed by the IDENTITY of the immutable
    figures objects they were rendered from. Live figures are replaced, never mutated, when they
    change, so a request re-serialises, re-hashes and re-encodes headers for nothing until its
    figures object changes."""

    def __init__(self, *, max_age_s: int, gzip_minimum_bytes: int) -> None:
        self._max_age_s = max_age_s
        self._gzip_minimum_bytes = gzip_minimum_bytes
        self._entries: dict[str, tuple[tuple[object, ...], Rendered]] = {}

    def get(self, key: str, sources: tuple[object, ...], render: Callable[[], BaseModel]) -> Rendered:
        entry = self._entries.get(key)
        if entry is not None and len(entry[0]) == len(sources) and all(
            cached is current for cached, current in zip(entry[0], sources)
        ):
            return entry[1]
        body = render().model_dump_json().encode()
        etag = strong_etag(body)
        headers = {"content-type": "application/json", "content-length": str(len(body)), "etag": etag}
        headers.update(validator_headers(self._max_age_s))
        gzip_body, gzip_headers = None, {}
        if len(body) >= self._gzip_minimum_bytes:
            gzip_body = gzip.compress(body, compresslevel=9, mtime=0)
            gzip_headers = {**headers, "content-length": str(len(gzip_body)), "content-encoding": "gzip"}
        rendered = Rendered(body, etag, _raw(headers), gzip_body, _raw(gzip_headers))
        # Keeping `sources` referenced also keeps their identities from being reused.
        self._entries[key] = (sources, rendered)
        return rendered

    def respond(self, request: Request, rendered: Rendered, *, encode: bool = False) -> Response:
        """200 with the prebuilt headers, or 304 when the client already holds this body.

        `encode=True` (the fast path, which sits outside the gzip middleware) serves the
        pre-compressed body to clients that accept gzip, as the middleware would."""
        matched = matching_tag(request.headers.get("if-none-match"), rendered.etag)
        if matched is not None:
            return not_modified(matched, self._max_age_s)
        response = Response.__new__(Response)  # skip per-request header encoding
        response.status_code = 200
        response.background = None
        if encode and rendered.gzip_body is not None and accepts_gzip(request):
            response.body = rendered.gzip_body
            response.raw_headers = list(rendered.gzip_raw_headers)
        else:
            response.body = rendered.body
            response.raw_headers = list(rendered.raw_headers)
        return response


def accepts_gzip(request: Request) -> bool:
    # The same test as Starlette's GZipMiddleware, so both paths agree on who gets gzip.
    return "gzip" in request.headers.get("accept-encoding", "")


def _raw(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


DEFAULT_CACHE_MAX_AGE_S = 60


def max_age_of(settings: object) -> int:
    return int(getattr(settings, "cache_max_age_s", DEFAULT_CACHE_MAX_AGE_S))


def validator_headers(max_age_s: int) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={max_age_s}", "Vary": "Accept-Encoding"}


def not_modified(client_tag: str, max_age_s: int) -> Response:
    # A 304 carries the validator of the representation the client holds.
    return Response(status_code=304, headers={**validator_headers(max_age_s), "ETag": client_tag})


def cached_json(request: Request, payload: BaseModel, *, max_age_s: int) -> Response:
    """Serialise `payload` and answer 200 with validators, or 304 when the client is current."""
    body = payload.model_dump_json().encode()
    etag = strong_etag(body)
    matched = matching_tag(request.headers.get("if-none-match"), etag)
    if matched is not None:
        return not_modified(matched, max_age_s)
    return Response(body, media_type="application/json", headers={**validator_headers(max_age_s), "ETag": etag})


def live_response(
    request: Request, model_id: str, live: Any, rendered: RenderedBodies, *, encode: bool = False
) -> Response | None:
    """A model's live figures as a cached response (200 or 304); None for an unknown model.

    Shared by the documented route and the fast path (`api.middleware.LiveFiguresFastPath`)."""
    figures = live.model(model_id)
    if figures is None:
        return None
    entry = rendered.get(f"live:{model_id}", (figures,), lambda: ModelLiveOut.of(figures))
    return rendered.respond(request, entry, encode=encode)
