"""HTTP caching of JSON responses: strong ETag over the body, Cache-Control, If-None-Match -> 304.

The ETag is a hash of the exact bytes sent, so it changes whenever any figure changes. When the
gzip middleware compresses a body, `api.middleware` appends `-gzip` inside the tag (a strong
validator must differ between content codings); `If-None-Match` accepts either form.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from fastapi import Request, Response
from pydantic import BaseModel

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


class RenderedBodies:
    """Serialised bodies (and their ETags) of live figures, keyed by the IDENTITY of the immutable
    figures objects they were rendered from. Live figures are replaced, never mutated, when they
    change, so a request re-serialises and re-hashes nothing until its figures object changes."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[object, ...], bytes, str]] = {}

    def get(self, key: str, sources: tuple[object, ...], render: Callable[[], BaseModel]) -> tuple[bytes, str]:
        entry = self._entries.get(key)
        if entry is not None and len(entry[0]) == len(sources) and all(
            cached is current for cached, current in zip(entry[0], sources)
        ):
            return entry[1], entry[2]
        body = render().model_dump_json().encode()
        etag = strong_etag(body)
        # Keeping `sources` referenced also keeps their identities from being reused.
        self._entries[key] = (sources, body, etag)
        return body, etag


def cached_json(request: Request, payload: BaseModel, *, max_age_s: int) -> Response:
    """Serialise `payload` and answer 200 with validators, or 304 when the client is current."""
    body = payload.model_dump_json().encode()
    return json_with_validators(request, body, strong_etag(body), max_age_s=max_age_s)


def json_with_validators(request: Request, body: bytes, etag: str, *, max_age_s: int) -> Response:
    """Answer 200 with `body` and its validators, or 304 when the client already has it."""
    headers = {
        "Cache-Control": f"public, max-age={max_age_s}",
        "Vary": "Accept-Encoding",
    }
    matched = matching_tag(request.headers.get("if-none-match"), etag)
    if matched is not None:
        # A 304 carries the validator of the representation the client holds.
        return Response(status_code=304, headers={**headers, "ETag": matched})
    return Response(body, media_type="application/json", headers={**headers, "ETag": etag})
