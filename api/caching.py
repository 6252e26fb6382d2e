"""HTTP caching of JSON responses: strong ETag over the body, Cache-Control, If-None-Match -> 304.

The ETag is a hash of the exact bytes sent, so it changes whenever any figure changes. When a
body goes out gzip-coded, `api.middleware.harden` appends `-gzip` inside the tag (a strong
validator must differ between content codings); `If-None-Match` accepts either form.
`RenderedBodies` keeps serialised bodies with finished headers, so a request for unchanged
figures does no serialising, hashing, compressing or header encoding.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from fastapi import Request, Response
from pydantic import BaseModel

from api.schemas import ModelLiveOut

GZIP_TAG_SUFFIX = "-gzip"
RawHeaders = tuple[tuple[bytes, bytes], ...]


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
    raw_headers: RawHeaders
    gzip_body: bytes | None = None
    gzip_raw_headers: RawHeaders = ()


class RenderedBodies:
    """Serialised bodies (and their ETags) of live figures, keyed by the IDENTITY of the immutable
    figures objects they were rendered from. Live figures are replaced, never mutated, when they
    change, so a request re-serialises, re-hashes and re-encodes headers for nothing until its
    figures object changes."""

    def __init__(
        self,
        *,
        max_age_s: int,
        gzip_minimum_bytes: int,
        finish_headers: Callable[[RawHeaders], RawHeaders] = lambda raw: raw,
    ) -> None:
        """`finish_headers` completes every prebuilt header list once (the app passes the
        security-header pass, so the fast path can send them as they are)."""
        self._max_age_s = max_age_s
        self._gzip_minimum_bytes = gzip_minimum_bytes
        self._finish = finish_headers
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
        rendered = Rendered(
            body, etag, self._finish(_raw(headers)), gzip_body, self._finish(_raw(gzip_headers)) if gzip_body else ()
        )
        # Keeping `sources` referenced also keeps their identities from being reused.
        self._entries[key] = (sources, rendered)
        return rendered

    def reply(self, rendered: Rendered, *, if_none_match: str | None, accept_encoding: str | None) -> Reply:
        """200 with the prebuilt headers, or 304 when the client already holds this body.

        A client whose `accept_encoding` takes gzip gets the pre-compressed body, as the gzip
        middleware would give it (the fast path bypasses that middleware; routes pass None)."""
        matched = matching_tag(if_none_match, rendered.etag)
        if matched is not None:
            return Reply(304, self._finish(_raw(not_modified_headers(matched, self._max_age_s))), b"")
        if rendered.gzip_body is not None and "gzip" in (accept_encoding or ""):
            # The same test as Starlette's GZipMiddleware, so both paths agree on who gets gzip.
            return Reply(200, rendered.gzip_raw_headers, rendered.gzip_body)
        return Reply(200, rendered.raw_headers, rendered.body)

    def respond(self, request: Request, rendered: Rendered) -> Response:
        """`reply` as a Response, for the routes (the gzip middleware encodes after them)."""
        status, raw_headers, body = self.reply(
            rendered, if_none_match=request.headers.get("if-none-match"), accept_encoding=None
        )
        response = Response.__new__(Response)  # skip per-request header encoding
        response.status_code = status
        response.background = None
        response.body = body
        response.raw_headers = list(raw_headers)
        return response


class Reply(NamedTuple):
    """A response as ASGI sends it: status, raw headers, body."""

    status: int
    headers: RawHeaders
    body: bytes


def _raw(headers: dict[str, str]) -> RawHeaders:
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


def validator_headers(max_age_s: int) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={max_age_s}", "Vary": "Accept-Encoding"}


def not_modified_headers(client_tag: str, max_age_s: int) -> dict[str, str]:
    # A 304 carries the validator of the representation the client holds.
    return {**validator_headers(max_age_s), "ETag": client_tag}


def cached_json(request: Request, payload: BaseModel, *, max_age_s: int) -> Response:
    """Serialise `payload` and answer 200 with validators, or 304 when the client is current."""
    body = payload.model_dump_json().encode()
    etag = strong_etag(body)
    matched = matching_tag(request.headers.get("if-none-match"), etag)
    if matched is not None:
        return Response(status_code=304, headers=not_modified_headers(matched, max_age_s))
    return Response(body, media_type="application/json", headers={**validator_headers(max_age_s), "ETag": etag})


def live_key(model_id: str, window: str | None = None, input_tokens: int | None = None) -> str:
    """The rendered-body key of one figure identity (model, window, profile)."""
    if window is None and input_tokens is None:
        return f"live:{model_id}"
    return f"live:{model_id}?window={window or ''}&input_tokens={input_tokens or ''}"


def render_live(rendered: RenderedBodies, key: str, figures: Any) -> Rendered:
    return rendered.get(key, (figures,), lambda: ModelLiveOut.of(figures))


def live_entry(model_id: str, live: Any, rendered: RenderedBodies) -> Rendered | None:
    """A model's rendered default live figures; None for an unknown model.

    Shared by the documented route and the fast path (`api.fast_path`)."""
    figures = live.model(model_id)
    if figures is None:
        return None
    return render_live(rendered, live_key(model_id), figures)
