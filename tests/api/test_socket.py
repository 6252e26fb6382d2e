"""The app behind a real uvicorn server on 127.0.0.1: what the ASGI transport cannot show
(the server's own path decoding of ids with '/' and %2F, gzip on the wire)."""

from __future__ import annotations

import asyncio
import gzip
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from tests.api.conftest import LLAMA


@pytest.fixture
async def server_url(app):
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5)


async def test_routes_over_a_real_socket(server_url):
    async with httpx.AsyncClient(base_url=server_url) as client:
        plain = await client.get(f"/v1/models/{LLAMA}/live")
        encoded = await client.get(f"/v1/models/{quote(LLAMA, safe='')}/live")
        probes = await client.get(f"/v1/models/{LLAMA}/endpoints/Cloudflare/probes?limit=2")
        missing = await client.get("/v1/models/meta-llama/nope/endpoints/Cloudflare/probes")
        async with client.stream("GET", "/v1/models", headers={"Accept-Encoding": "gzip"}) as listing:
            raw = b"".join([chunk async for chunk in listing.aiter_raw()])

    assert plain.status_code == encoded.status_code == 200
    assert plain.json()["model"] == encoded.json()["model"] == LLAMA
    assert len(probes.json()["data"]) == 2
    assert missing.status_code == 404
    assert listing.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw).startswith(b'{"data":[{"id":"meta-llama/')
