"""Admin routes: off (404) without a token, 401 on a wrong one, hooks called with the right one."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN, LLAMA, make_settings

PROBE_PATH = f"/admin/probe/{LLAMA}/Cloudflare"
GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("path", [PROBE_PATH, "/admin/reload"])
async def test_admin_routes_do_not_exist_without_a_token(app_factory, fake_admin, path):
    for token in (None, ""):  # an empty token must not mean "no password"
        async with client_for(app_factory(settings=make_settings(admin_token=token))) as client:
            response = await client.post(path, headers={"Authorization": "Bearer "})
            assert response.status_code == 404
            assert path not in (await client.get("/openapi.json")).json()["paths"]
    assert fake_admin.calls == []


@pytest.mark.parametrize("path", [PROBE_PATH, "/admin/reload"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
    ],
)
async def test_wrong_or_missing_token_is_401(client, fake_admin, path, headers):
    response = await client.post(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert ADMIN_TOKEN not in response.text
    assert fake_admin.calls == []


async def test_probe_now_with_the_token_calls_the_hook(client, fake_admin):
    response = await client.post(PROBE_PATH, headers=GOOD)
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["started_at"] == "2026-03-01T12:00:00Z"
    assert fake_admin.calls == [("probe_now", LLAMA, "Cloudflare")]


async def test_reload_with_the_token_calls_the_hook(client, fake_admin):
    response = await client.post("/admin/reload", headers=GOOD)
    assert response.status_code == 200
    assert response.json() == {"reloaded": True, "models": 2, "endpoints": 3}
    assert fake_admin.calls == [("reload",)]


@pytest.mark.parametrize(
    "path", [f"/admin/probe/{LLAMA}/Nope", "/admin/probe/nope/Cloudflare", f"/admin/probe/{LLAMA}"]
)
async def test_probe_now_unknown_endpoint_is_404(client, fake_admin, path):
    response = await client.post(path, headers=GOOD)
    assert response.status_code == 404
    assert "unknown endpoint" in response.json()["detail"]
    assert fake_admin.calls == []


async def test_probe_now_endpoint_removed_meanwhile_is_404(client, fake_admin):
    async def vanished(model_id, provider):
        raise KeyError(f"{model_id}/{provider}")

    fake_admin.probe_now = vanished
    response = await client.post(PROBE_PATH, headers=GOOD)
    assert response.status_code == 404


@pytest.mark.parametrize("path", [PROBE_PATH, "/admin/reload"])
async def test_admin_without_hooks_is_503(app_factory, path):
    async with client_for(app_factory(admin=None)) as client:
        assert (await client.post(path)).status_code == 401  # auth first, so nothing leaks
        response = await client.post(path, headers=GOOD)
    assert response.status_code == 503
    assert response.json()["detail"]


async def test_admin_routes_are_post_only(client):
    assert (await client.get("/admin/reload", headers=GOOD)).status_code == 405
