"""The Prometheus exposition behind `/metrics`, rendered off the event loop and shared.

Rendering a registry is CPU-bound and grows with the number of series (at thousands of
endpoints a scrape is megabytes and takes about a second of pure Python). Done on the event loop
it would delay token reads and probe deadlines for as long as it runs, once per scraper. So
`MetricsExposition` renders (and gzip-compresses, when the scraper accepts it) in a worker
thread, keeps the result for `max_age_s` after it was made, and lets concurrent scrapers wait for
the one rendering in progress instead of starting their own. The values served are therefore at
most `max_age_s` plus one rendering old; probe timing never depends on who scrapes or how often.

prometheus_client is thread-safe: each metric copies its children under its own lock while
being collected, so probes keep updating metrics while a rendering runs.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

GZIP_LEVEL = 6


@dataclass(frozen=True)
class Exposition:
    body: bytes
    content_type: str
    content_encoding: str | None  # "gzip" or None


class MetricsExposition:
    def __init__(
        self, registry: CollectorRegistry, *, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._max_age_s = max_age_s
        self._clock = clock
        # (content type, gzip) -> (finished at, exposition)
        self._cache: dict[tuple[str, bool], tuple[float, Exposition]] = {}
        self._rendering: dict[tuple[str, bool], asyncio.Future[Exposition]] = {}

    async def get(self, *, accept: str | None, accept_encoding: str | None) -> Exposition:
        encode, content_type = choose_encoder(accept or "")
        key = (content_type, "gzip" in (accept_encoding or ""))
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < self._max_age_s:
            return cached[1]
        rendering = self._rendering.get(key)
        if rendering is None:
            rendering = asyncio.ensure_future(self._render(key, encode))
            self._rendering[key] = rendering
            rendering.add_done_callback(lambda _: self._rendering.pop(key, None))
        # shield: a scraper that disconnects does not cancel the rendering others wait for.
        return await asyncio.shield(rendering)

    async def _render(self, key: tuple[str, bool], encode: Callable[[CollectorRegistry], bytes]) -> Exposition:
        content_type, compress = key

        def render() -> Exposition:
            body = encode(self._registry)
            if compress:
                return Exposition(gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), content_type, "gzip")
            return Exposition(body, content_type, None)

        exposition = await asyncio.to_thread(render)
        self._cache[key] = (self._clock(), exposition)
        return exposition
