"""The status pages, the embed and the badge in a real Chromium against a real service."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, quote, urlsplit

from api.pages.view import STATE_LABELS, format_ms, format_ratio, format_tps, model_path
from monitor.testing.stream_server import html_response
from tests.browser.conftest import (
    wait_until,
    DOWN_MODEL,
    HOSTILE_ID,
    HOSTILE_NAME,
    HOSTILE_PROVIDER,
    LLAMA,
    SCREENSHOTS,
    Watch,
    stable,
)

SVG_NS = "{http://www.w3.org/2000/svg}"


def figure_value(text: str) -> float | None:
    return None if text == "" else float(text)


def card_figures(card) -> dict:
    return {
        "ttft": card.locator("data.v-ttft"),
        "tps": card.locator("data.v-tps"),
        "active": card.locator("data.v-active"),
    }


def test_status_loads_clean_and_every_card_equals_the_live_api(site, context_factory):
    page = context_factory().new_page()
    watch = Watch.attach(page)

    def load():
        page.goto(site.base_url + "/status", wait_until="load")
        cards = page.locator("article.card")
        return [
            {
                "id": card.get_attribute("data-model"),
                "ttft": card.locator("data.v-ttft").get_attribute("value"),
                "ttft_text": card.locator("data.v-ttft").inner_text(),
                "tps": card.locator("data.v-tps").get_attribute("value"),
                "tps_text": card.locator("data.v-tps").inner_text(),
                "active": card.locator("data.v-active").inner_text(),
                "via": card.locator("ul.via li").all_inner_texts(),
                "updated": card.locator("time").get_attribute("datetime") if card.locator("time").count() else None,
                "meta": card.locator(".meta").inner_text(),
            }
            for card in cards.all()
        ]

    cards, models = stable(site, load)
    watch.assert_clean()
    live = {m["id"]: m["live"] for m in models["data"]}
    assert [c["id"] for c in cards] == [LLAMA, DOWN_MODEL, HOSTILE_ID]
    for card in cards:
        body = live[card["id"]]
        assert figure_value(card["ttft"]) == body["best_ttft_ms"]
        assert card["ttft_text"] == format_ms(body["best_ttft_ms"])
        assert figure_value(card["tps"]) == body["best_throughput_tps"]
        assert card["tps_text"] == format_tps(body["best_throughput_tps"])
        assert card["active"] == f"{body['active_endpoints']}/{body['total_endpoints']}"
        assert card["via"] == body["available_via"]
        assert card["updated"] == body["updated_at"]
        assert "Refreshed every 3 seconds." in card["meta"]
        assert "UTC" in card["meta"]
    # The figures are real: the healthy provider answers, the failing one does not.
    assert live[LLAMA]["active_endpoints"] == 1 and live[LLAMA]["best_ttft_ms"] > 0
    assert live[DOWN_MODEL]["active_endpoints"] == 0 and live[DOWN_MODEL]["best_ttft_ms"] is None
    # Only the page itself and its stylesheet were requested, both from the service.
    assert {urlsplit(u).netloc for u in watch.requests} == {urlsplit(site.base_url).netloc}


def test_pages_work_with_javascript_disabled(site, context_factory):
    context = context_factory(java_script_enabled=False)
    page = context.new_page()
    watch = Watch.attach(page)
    page.goto(site.base_url + "/status")
    assert page.locator("article.card").count() == 3

    page.fill("#q", "llama")
    page.press("#q", "Enter")  # a plain GET form: no script needed
    page.wait_for_url(re.compile(r"/status\?"))
    assert parse_qs(urlsplit(page.url).query)["q"] == ["llama"]
    assert page.locator("article.card").evaluate_all("cs => cs.map(c => c.dataset.model)") == [LLAMA]

    page.fill("#q", "")
    page.check("input[name=filter][value=down]")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"filter=down"))
    assert page.locator("article.card").evaluate_all("cs => cs.map(c => c.dataset.model)") == [DOWN_MODEL]
    assert page.locator("input[name=filter][value=down]").is_checked()

    page.check("input[name=filter][value=degraded]")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"filter=degraded"))
    assert page.locator("article.card").evaluate_all("cs => cs.map(c => c.dataset.model)") == [LLAMA]

    # The model page and the embed render their figures without scripts too.
    page.goto(site.base_url + "/status/models/" + model_path(LLAMA))
    rows = page.locator("table.endpoints tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.provider)") == ["Healthy", "Failing"]
    assert page.locator("tr[data-provider=Failing] td[data-label='Last error'] code").inner_text() == "http_error"
    page.goto(site.base_url + "/embed/models/" + model_path(LLAMA))
    assert page.locator("article.card data.v-active").inner_text() == "1/2"
    watch.assert_clean()


def test_model_page_endpoint_table_equals_the_live_api(site, context_factory):
    page = context_factory().new_page()
    watch = Watch.attach(page)

    def load():
        page.goto(site.base_url + "/status/models/" + model_path(LLAMA))
        return {
            row.get_attribute("data-provider"): {
                "ttft": row.locator("data.v-ttft").get_attribute("value"),
                "tps": row.locator("data.v-tps").get_attribute("value"),
                "uptime": row.locator("data.v-uptime").get_attribute("value"),
                "uptime_text": row.locator("data.v-uptime").inner_text(),
                "state": row.locator("td[data-label=State]").inner_text(),
                "last_probe": row.locator("td[data-label='Last probe'] time").get_attribute("datetime"),
            }
            for row in page.locator("table.endpoints tbody tr").all()
        }

    rows, body = stable(site, load, path="/v1/models/" + quote(LLAMA, safe="/") + "/live")
    watch.assert_clean()
    assert list(rows) == [e["provider"] for e in body["endpoints"]]
    for endpoint in body["endpoints"]:
        row = rows[endpoint["provider"]]
        assert figure_value(row["ttft"]) == endpoint["ttft_ms_p50"]
        assert figure_value(row["tps"]) == endpoint["throughput_tps_p50"]
        assert figure_value(row["uptime"]) == endpoint["uptime"]
        assert row["uptime_text"] == format_ratio(endpoint["uptime"])
        assert row["last_probe"] == endpoint["last_probe_at"]
        # State in words (with an icon beside it), never by colour alone.
        assert STATE_LABELS[endpoint["state"]][0] in row["state"]
        assert row["state"].startswith(STATE_LABELS[endpoint["state"]][1])


def test_badge_svg_parses_and_shows_the_live_value(site, context_factory):
    page = context_factory().new_page()
    badge = "/v1/models/" + quote(LLAMA, safe="/") + "/badge.svg?metric="
    expected = {
        "ttft": lambda b: format_ms(b["best_ttft_ms"]),
        "throughput": lambda b: format_tps(b["best_throughput_tps"]),
        "active": lambda b: f"{b['active_endpoints']}/{b['total_endpoints']}",
        "uptime": lambda b: format_ratio(max(e["uptime"] for e in b["endpoints"] if e["uptime"] is not None)).replace(" %", "%"),
    }
    for metric, value_of in expected.items():
        response, body = stable(site, lambda: site.get(badge + metric), path="/v1/models/" + quote(LLAMA, safe="/") + "/live")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        assert response.headers["cache-control"] == "public, max-age=60"
        root = ET.fromstring(response.content)
        assert root.tag == SVG_NS + "svg"
        value = root.find(f".//{SVG_NS}text[@class='value']").text
        assert value == value_of(body)
        assert root.find(f"{SVG_NS}title").text.endswith(": " + value)
        again = site.get(badge + metric, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code in (304, 200)  # 200 only when a probe landed in between
        if again.status_code == 304:
            assert again.content == b""
    # The browser renders it as an image.
    page.goto(site.base_url + "/status")
    width = page.evaluate(
        """url => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth);
                                          i.onerror = () => ok(-1); i.src = url; })""",
        site.base_url + badge + "active",
    )
    assert width > 40
    bad = site.get(badge + "latency")
    assert bad.status_code == 422
    assert "metric" in bad.text
    assert site.get("/v1/models/no/such/model/badge.svg").status_code == 404


def host_page(embed_url: str) -> str:
    return (
        "<!doctype html><html><head><title>catalog</title></head><body>"
        f'<iframe id="card" title="live card" src="{embed_url}" width="400" height="360"></iframe>'
        "</body></html>"
    )


def test_embed_renders_in_a_listed_origin_and_is_refused_elsewhere(site, host_pages, context_factory):
    allowed, other = host_pages
    embed_url = site.base_url + "/embed/models/" + model_path(LLAMA)
    for server in (allowed, other):
        server.route("GET", "/", html_response(200, host_page(embed_url)))

    context = context_factory()
    page = context.new_page()
    watch = Watch.attach(page)
    page.goto(allowed.url + "/")
    frame = page.frame_locator("#card")
    assert frame.locator("article.card data.v-active").inner_text() == "1/2"
    assert frame.locator("article.card .lp").inner_text().casefold() == "live performance"
    assert watch.console_errors == [] and watch.failed_requests == []
    assert context.cookies() == []
    third_party = [u for u in watch.requests if urlsplit(u).netloc not in {urlsplit(allowed.url).netloc,
                                                                           urlsplit(site.base_url).netloc}]
    assert third_party == []

    refused = context.new_page()
    messages: list[str] = []
    refused.on("console", lambda m: messages.append(m.text))
    refused.goto(other.url + "/")
    refused.wait_for_timeout(500)  # let the frame's navigation settle
    inner = refused.frame_locator("#card")
    assert inner.locator("article.card").count() == 0
    assert any("frame-ancestors" in m for m in messages), messages

    headers = site.get("/embed/models/" + model_path(LLAMA)).headers
    assert headers["content-security-policy"].endswith(f"frame-ancestors {allowed.url}")
    assert "x-frame-options" not in headers
    assert "set-cookie" not in headers
    assert site.get("/status").headers["x-frame-options"] == "DENY"


def test_embed_themes(site, context_factory):
    url = site.base_url + "/embed/models/" + model_path(LLAMA)

    def background(page) -> str:
        return page.locator("article.card").evaluate("c => getComputedStyle(c).backgroundColor")

    light = context_factory(color_scheme="light").new_page()
    light.goto(url)
    dark = context_factory(color_scheme="dark").new_page()
    dark.goto(url)
    assert background(light) != background(dark)
    forced = context_factory(color_scheme="light").new_page()
    forced.goto(url + "?theme=dark")
    assert background(forced) == background(dark)
    forced_light = context_factory(color_scheme="dark").new_page()
    forced_light.goto(url + "?theme=light")
    assert background(forced_light) == background(light)
    # Compact: the card alone fits an iframe of a catalog sidebar.
    light.set_viewport_size({"width": 360, "height": 600})
    height = light.evaluate("document.querySelector('article.card').getBoundingClientRect().bottom")
    assert height < 360
    assert light.evaluate("document.documentElement.scrollWidth") <= 360


def test_hostile_model_id_and_provider_are_shown_as_text(site, context_factory):
    page = context_factory().new_page()
    watch = Watch.attach(page)
    page.goto(site.base_url + "/status?q=evil")
    card = page.locator("article.card")
    assert card.count() == 1
    assert card.get_attribute("data-model") == HOSTILE_ID
    assert card.locator(".model-id code").inner_text() == HOSTILE_ID
    assert card.locator(".name a").inner_text() == HOSTILE_NAME
    assert card.locator("ul.via li").inner_text() == HOSTILE_PROVIDER
    assert page.locator("script, img, b").count() == 0  # nothing from the id became markup

    card.locator(".name a").click()
    page.wait_for_load_state()
    assert page.locator("h1.name").inner_text() == HOSTILE_NAME
    assert page.locator("table.endpoints tbody th").inner_text() == HOSTILE_PROVIDER
    assert page.locator("article.card").get_attribute("data-model") == HOSTILE_ID
    assert page.locator("script, img, b").count() == 0

    page.goto(site.base_url + "/embed/models/" + model_path(HOSTILE_ID))
    assert page.locator(".model-id code").inner_text() == HOSTILE_ID
    assert page.locator("script, img, b").count() == 0
    badge = site.get("/v1/models/" + quote(HOSTILE_ID, safe="/") + "/badge.svg?metric=active")
    assert badge.status_code == 200
    ET.fromstring(badge.content)
    watch.assert_clean()


def test_keyboard_reaches_search_filters_and_cards(site, context_factory):
    page = context_factory().new_page()
    page.goto(site.base_url + "/status")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(
            "() => { const e = document.activeElement; return e.id || e.name || e.getAttribute('href') || e.tagName; }"
        ))
    assert reached[0] == "#main"  # the skip link comes first
    assert "q" in reached and "filter" in reached
    assert "/status/models/" + model_path(LLAMA) in reached


def test_screenshots_at_desktop_and_phone_width(site, context_factory):
    """Full-page screenshots for a human to look at (artifacts/screenshots, git-ignored); the
    test itself checks that nothing overflows the viewport sideways at either width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"status": "/status", "model": "/status/models/" + model_path(LLAMA)}
    for width in (1280, 390):
        for scheme in ("light", "dark"):
            page = context_factory(viewport={"width": width, "height": 900}, color_scheme=scheme).new_page()
            for name, path in pages.items():
                page.goto(site.base_url + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
    assert len(list(SCREENSHOTS.glob("*.png"))) >= 8


def test_axe_finds_no_serious_or_critical_violations(site, context_factory, axe_source):
    paths = [
        "/status",
        "/status?filter=down",
        "/status/models/" + model_path(LLAMA),
        "/status/models/" + model_path(HOSTILE_ID),
        "/embed/models/" + model_path(LLAMA),
    ]
    found = {}
    for scheme in ("light", "dark"):
        # bypass_csp: the pages forbid every script, axe included.
        page = context_factory(bypass_csp=True, color_scheme=scheme).new_page()
        for path in paths:
            page.goto(site.base_url + path)
            page.add_script_tag(content=axe_source)
            violations = page.evaluate("async () => (await axe.run(document)).violations")
            bad = [
                (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                for v in violations if v["impact"] in ("serious", "critical")
            ]
            if bad:
                found[(scheme, path)] = bad
    assert found == {}


def runs_of(values: list) -> int:
    """How many runs of consecutive non-null values (each starts a new line segment)."""
    runs, previous = 0, None
    for value in values:
        if value is not None and previous is None:
            runs += 1
        previous = value
    return runs


def test_model_page_charts_draw_every_history_point_with_gaps_as_gaps(site, context_factory):
    page = context_factory().new_page()
    watch = Watch.attach(page)
    base = "/v1/models/" + quote(LLAMA, safe="/") + "/endpoints/"
    fields = {"ttft": "ttft_ms_p50", "throughput": "throughput_tps_p50"}

    def load():
        page.goto(site.base_url + "/status/models/" + model_path(LLAMA))
        charts = []
        for figure in page.locator("figure.chart-box").all():
            charts.append({
                "metric": figure.get_attribute("data-metric"), "range": figure.get_attribute("data-range"),
                "step": figure.get_attribute("data-step"), "from": figure.get_attribute("data-from"),
                "to": figure.get_attribute("data-to"),
                "points": figure.locator("circle.pt").count(),
                "segments": figure.locator("path.line").evaluate_all(
                    "ps => ps.map(p => (p.getAttribute('d').match(/M/g) || []).length)"),
                "declared": int(figure.locator("svg.chart").get_attribute("data-points")),
            })
        return charts

    # Compare with the history API over exactly the charts' ranges, between two reads of it
    # (the service rolls up every minute).
    def history_of(chart, provider):
        return site.get(base + provider + "/history", params={"from": chart["from"], "to": chart["to"], "step": chart["step"]}).json()["data"]

    for _ in range(5):
        charts = load()
        before = {(c["metric"], c["range"], p): history_of(c, p) for c in charts for p in ("Healthy", "Failing")}
        charts_again = load()
        after = {(c["metric"], c["range"], p): history_of(c, p) for c in charts_again for p in ("Healthy", "Failing")}
        if before == after and [c["points"] for c in charts] == [c["points"] for c in charts_again]:
            break
    assert {(c["metric"], c["range"]) for c in charts} == {(m, r) for m in fields for r in ("7d", "30d")}
    for chart in charts:
        expected_points, expected_runs = 0, []
        for provider in ("Healthy", "Failing"):
            values = [item[fields[chart["metric"]]] for item in after[(chart["metric"], chart["range"], provider)]]
            expected_points += sum(v is not None for v in values)
            if any(v is not None for v in values):
                expected_runs.append(runs_of(values))
        assert chart["points"] == expected_points == chart["declared"], chart
        assert chart["segments"] == expected_runs, chart  # one line per provider with data
    seven_days = next(c for c in charts if c["metric"] == "ttft" and c["range"] == "7d")
    thirty_days = next(c for c in charts if c["metric"] == "ttft" and c["range"] == "30d")
    # The seeded holes: 6 hours a day and a half ago, days 10 to 12 ago; the failing endpoint has
    # no point at all (no ok probe).
    assert seven_days["segments"][0] >= 2 and thirty_days["segments"][0] >= 2
    assert seven_days["points"] >= 100
    # The 90-day bar: one cell per day, the missing days drawn as "no data".
    bar = page.locator("figure.uptime-box[data-provider=Healthy] svg.uptime")
    assert bar.get_attribute("data-days") == "90"
    titles = bar.locator("rect title").evaluate_all("ts => ts.map(t => t.textContent)")
    assert len(titles) == 90
    by_day = dict(t.split(": ", 1) for t in titles)
    today = datetime.now(timezone.utc).date()
    for back in (10, 11):  # the seeded holes
        assert by_day[str(today - timedelta(days=back))] == "no data"
    assert by_day[str(today - timedelta(days=60))] == "no data"  # before the seeded history
    with_data = [t for t in by_day.values() if "% uptime" in t]
    assert len(with_data) >= 35
    watch.assert_clean()


def test_model_page_windows_and_incidents_equal_the_api(site, context_factory):
    page = context_factory().new_page()
    model = quote(LLAMA, safe="/")

    def open_incidents() -> bool:
        return bool(site.get("/v1/incidents", params={"model": LLAMA, "open": "true"}).json()["data"])

    wait_until(open_incidents, timeout_s=40, what="an incident on the failing endpoint")

    def load():
        page.goto(site.base_url + "/status/models/" + model_path(LLAMA))
        rows = {
            row.get_attribute("data-provider"): (
                row.locator("data.v-uptime-7d").get_attribute("value"),
                row.locator("data.v-uptime-30d").get_attribute("value"),
                row.locator("td[data-label=State]").inner_text(),
            )
            for row in page.locator("table.endpoints tbody tr").all()
        }
        incidents = page.locator("ul.incidents li").all_inner_texts()
        return rows, incidents

    def windows() -> dict[int, tuple[str, dict]]:
        answers = {days: site.get(f"/v1/models/{model}/live", params={"window": f"{days}d"}) for days in (7, 30)}
        return {days: (answer.headers["etag"], answer.json()) for days, answer in answers.items()}

    # The window figures move when a probe lands or the window's start passes a seeded probe:
    # compare the page with the API only when both windows' ETags held across the page load.
    for _ in range(10):
        before = windows()
        rows, incidents = load()
        after = windows()
        if all(before[days][0] == after[days][0] for days in (7, 30)):
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the window figures changed during every attempt")
    for days in (7, 30):
        body = after[days][1]
        for endpoint in body["endpoints"]:
            shown = rows[endpoint["provider"]][0 if days == 7 else 1]
            assert figure_value(shown) == endpoint["uptime"], (days, endpoint["provider"])
    # The seeded history makes these real: 7 of 8 hours ok on the healthy endpoint.
    assert 0.8 < float(rows["Healthy"][1]) < 1.0 and float(rows["Failing"][1]) == 0.0
    assert "Down" in rows["Failing"][2]
    listed = site.get("/v1/incidents", params={"model": LLAMA}).json()["data"]
    assert len(incidents) == len(listed) >= 1
    assert "Open" in incidents[0] and "Failing" in incidents[0] and "http_error" in incidents[0]
