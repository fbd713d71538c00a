"""The operator's dashboard in a real browser (Debian's Chromium driven by Playwright).

One stack for all browser modules (conftest.py), as ``ecogrid demo`` runs it: a private
Mosquitto, the device emulator and the service with the optimizer. The tests sign in
through the page and use it as an operator or a viewer would; screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.http.dashboard.browser import (
    N_SITES,
    OPERATOR,
    SCENARIO,
    VIEWER,
    require_browser,
    shot,
)
from tests.api.server import wait_for

IN_FLIGHT = ("pending", "queued", "sent", "received")
# The service pushes KPIs over the WebSocket every fifth refresh, and the refreshes are 1 s
# apart plus their own time: over 5 s on a loaded machine. A wait for a new push allows 15 s.
KPI_PUSH_WAIT_MS = 15_000

require_browser()


def test_page_and_libraries_are_served_from_the_package(stack):
    c = stack["client"]
    r = c.get("/")
    assert r.status_code == 200 and 'src="/js/main.js"' in r.text
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    for path in ("/vendor/uplot/uPlot.esm.js", "/vendor/leaflet/leaflet-src.esm.js",
                 "/js/views/overview.js", "/css/dashboard.css"):
        assert c.get(path).status_code == 200, path
    config = c.get("/dashboard/config.json").json()
    assert config["tile_url"] == stack["tiles"].url and config["tile_attribution"]
    assert c.get("/api/v1/nope").status_code == 404


def test_operator_sees_kpis_change_live_and_the_map(stack, page_for):
    page = page_for(OPERATOR)
    strip = page.locator("#kpis")
    assert strip.locator("[data-kpi=sites]").inner_text() == str(N_SITES)
    first = strip.get_attribute("data-t-s")
    # The service pushes KPIs over the WebSocket: the strip follows.
    page.wait_for_function(
        f"() => {{ const k = document.querySelector('#kpis'); "
        f"return k.dataset.source === 'ws' && k.dataset.tS !== '{first}'; }}",
        timeout=KPI_PUSH_WAIT_MS)
    assert strip.locator("[data-kpi=source]").inner_text() == "live"
    assert float(strip.locator("[data-kpi=capacity]").inner_text().replace(",", "")) > 0
    # Every site is on the map and, fed by telemetry, shown online.
    page.wait_for_function(
        f"() => document.querySelectorAll('#site-map path[data-status=online]').length "
        f"=== {N_SITES}")
    page.wait_for_function("() => document.querySelectorAll('#site-table tbody tr').length === 3")
    # The basemap is the configured tile server's, with its attribution.
    page.wait_for_selector("#site-map[data-basemap=tiles] .leaflet-tile-loaded")
    assert "test tiles" in page.locator(".leaflet-control-attribution").inner_text()
    assert page.locator("#map-notice").count() == 0
    page.wait_for_timeout(1500)  # let the fleet chart gather a few live samples
    # The fleet chart's range starts from the server's fleet history (any fleet size).
    page.wait_for_function("() => document.querySelector('#chart-note').innerText"
                           ".includes('history from the telemetry store')")
    shot(page, "overview")
    # The popup of a site opens its page.
    site = stack["fleet"].site_id[0]
    page.locator(f"#site-map path[data-site={site}]").dispatch_event("click")
    popup = page.locator(".leaflet-popup")
    popup.wait_for()
    assert site in popup.inner_text() and "online" in popup.inner_text()
    shot(page, "overview-popup")
    popup.locator("a[data-site]").click()
    page.wait_for_url(f"**/#/site/{site}")
    page.wait_for_selector("#device-table")
    assert site in page.locator("h1").inner_text()
    assert page.errors == []


def test_map_falls_back_to_a_plain_background_with_a_notice(stack, page_for):
    tiles = stack["tiles"]
    tiles.down = True
    try:
        page = page_for(VIEWER)
        page.wait_for_selector("#site-map[data-basemap=plain]")
        notice = page.locator("#map-notice")
        assert "could not be loaded" in notice.inner_text()
        assert "plain background" in notice.inner_text()
        assert page.locator("#site-map .leaflet-tile-loaded").count() == 0
        # The sites are all there, coloured by status, and still open their pages.
        page.wait_for_function(f"() => document.querySelectorAll('#site-map path[data-site]')"
                               f".length === {N_SITES}")
        shot(page, "overview-offline-map")
    finally:
        tiles.down = False
    assert page.errors == []


def test_site_page_table_chart_and_manual_setpoint(stack, page_for):
    fleet = stack["fleet"]
    site = fleet.site_id[1]
    page = page_for(OPERATOR)
    page.goto(f"{stack['url']}/#/site/{site}")
    page.wait_for_selector("#device-table tbody tr")
    page.wait_for_selector("#site-chart canvas")  # site power: its history, then live
    page.wait_for_function("() => document.querySelector('#site-chart-note').innerText"
                           ".includes('history from the telemetry store')")
    n = sum(1 for d in fleet.device_id if d.startswith(site + "-"))
    rows = page.locator("#device-table tbody tr")
    assert rows.count() == n
    page.click("#device-table th[data-key=id]")  # sorted by id already: now descending
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.device)")
    assert ids == sorted(ids, reverse=True)
    page.select_option("#device-type", "battery")
    types = page.locator("#device-table tbody tr td:nth-child(2)").all_inner_texts()
    assert types and set(types) == {"battery"}
    page.fill("#device-search", "BAT01")
    assert page.locator("#device-table tbody tr").count() == 1
    bat = page.locator("#device-table tbody tr").get_attribute("data-device")
    page.locator("#device-table tbody tr").click()
    page.wait_for_selector("#device-chart canvas")
    assert bat in page.locator("#device-title").inner_text()
    # Manual setpoint: the command shows up and reaches "applied" through the acks.
    page.fill("#setpoint-value", "12.5")
    page.click("#setpoint-form button[type=submit]")
    page.wait_for_selector(f"#command-table tr[data-status=applied]:has(td:text-is('{bat}'))",
                           timeout=20_000)
    cmds = stack["client"].get("/api/v1/commands", headers=stack["viewer"],
                               params={"device_id": bat}).json()
    assert cmds[0]["value"] == pytest.approx(12.5) and cmds[0]["status"] == "applied"
    shot(page, "site")
    assert page.errors == []


def test_operator_approves_a_plan_and_sees_its_commands_applied(stack, page_for):
    page = page_for(OPERATOR)
    page.goto(f"{stack['url']}/#/dispatch")
    page.click("#plan-request")
    page.wait_for_selector("#plan-approve")
    assert page.locator("#plan-status").inner_text() == "proposed"
    assert page.locator("#plan-chart canvas").count() == 1
    assert page.locator("#plan-kpis").inner_text().count("Revenue") >= 2
    plan_id = page.locator("#plan-select").input_value()
    page.select_option("#plan-scope", stack["fleet"].site_id[0])  # one site's plan
    page.click("#plan-approve")
    progress = page.locator("#plan-progress")
    page.wait_for_function(
        "() => { const p = document.querySelector('#plan-progress'); "
        "return p && Number(p.dataset.applied) > 0 && "
        "['approved', 'dispatched'].includes(document.querySelector('#plan-status').innerText)}",
        timeout=30_000)

    def settled() -> list[dict[str, Any]] | None:
        cmds = stack["client"].get("/api/v1/commands", headers=stack["viewer"],
                                   params={"plan_id": plan_id, "limit": 5000}).json()
        released = [c for c in cmds if c["status"] != "scheduled"]
        done = released and not [c for c in released if c["status"] in IN_FLIGHT]
        return released if done else None

    released = wait_for(settled, timeout_s=60, every_s=0.5)  # lost acks time out after 30 s
    applied = sum(c["status"] == "applied" for c in released)
    assert applied >= 0.9 * len(released)  # the emulator may refuse a few
    # The page followed every acknowledgement over the WebSocket.
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#plan-progress'); return "
        f"p.dataset.inFlight === '0' && p.dataset.applied === '{applied}'; }}", timeout=10_000)
    assert progress.locator("#plan-applied").inner_text() == str(applied)
    shot(page, "dispatch")
    assert page.errors == []


def test_alert_arrives_live_colours_the_map_and_is_acknowledged(stack, page_for):
    site = stack["fleet"].site_id[2]
    page = page_for(OPERATOR)
    page.goto(f"{stack['url']}/#/alerts")
    page.wait_for_selector("#alert-table")
    stack["emu"].drop_gateway(site)
    try:
        row = page.locator("#alert-table tbody tr", has_text=f"site {site} went offline")
        row.wait_for(timeout=20_000)
        assert page.locator("#alert-count").inner_text() != ""
        page.goto(f"{stack['url']}/#/")
        page.wait_for_selector(f"#site-map path[data-site={site}][data-status=alerting]")
        page.goto(f"{stack['url']}/#/alerts")
        row.wait_for()
        shot(page, "alerts")
        row.locator("button[data-ack]").click()
        page.select_option("#alert-state", "acked")
        acked = page.locator("#alert-table tbody tr", has_text=f"site {site} went offline")
        acked.wait_for()
        assert OPERATOR[0] in acked.inner_text()
    finally:
        stack["emu"].restore_gateway(site)
    assert page.errors == []


def test_scenarios_compare_runs(stack, page_for):
    c = stack["client"]
    ids = []
    for name, kind in (("no-control", "none"), ("rule", "rule")):
        r = c.post("/api/v1/scenarios", headers=stack["operator"],
                   content=SCENARIO.format(name=name, kind=kind).encode())
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])

    def done() -> bool:
        runs[:] = [c.get(f"/api/v1/scenarios/{i}", headers=stack["viewer"]).json() for i in ids]
        assert not [r for r in runs if r["status"] == "failed"], runs
        return all(r["status"] == "done" for r in runs)

    runs: list[dict[str, Any]] = []
    try:
        wait_for(done, timeout_s=60, every_s=0.5)
    except AssertionError:
        raise AssertionError(f"scenario runs not done in 60 s: {runs}") from None
    page = page_for(VIEWER)
    page.goto(f"{stack['url']}/#/scenarios")
    page.wait_for_selector("#kpi-table")
    header = page.locator("#kpi-table thead").inner_text()
    assert all(i in header for i in ids)
    assert page.locator("#kpi-table tbody tr").count() > 0
    page.wait_for_selector("#kpi-chart canvas")
    page.wait_for_selector("#series-chart canvas")  # a run's fleet flows over time
    page.wait_for_function("() => / points/.test(document.querySelector('#series-note')"
                           ".innerText)")
    shot(page, "scenarios")
    assert page.errors == []


def test_viewer_sees_no_controls_and_the_api_refuses_them(stack, page_for):
    c = stack["client"]
    plan = c.post("/api/v1/plans", headers=stack["operator"]).json()
    page = page_for(VIEWER)
    page.goto(f"{stack['url']}/#/dispatch")
    page.wait_for_selector("#plan-status")
    assert page.locator("#plan-select").input_value() == plan["id"]
    assert page.locator("#plan-status").inner_text() == "proposed"
    assert page.locator("#plan-approve, #plan-reject, #plan-request").count() == 0
    page.goto(f"{stack['url']}/#/site/{stack['fleet'].site_id[0]}")
    page.wait_for_selector("#device-chart canvas")
    assert page.locator("#setpoint-form").is_hidden()
    page.goto(f"{stack['url']}/#/alerts")
    page.select_option("#alert-state", "all")
    page.wait_for_selector("#alert-table tbody tr")
    assert page.locator("button[data-ack]").count() == 0
    r = c.post(f"/api/v1/plans/{plan['id']}/approve", headers=stack["viewer"])
    assert r.status_code == 403
    # Signing out returns to the sign-in form and forgets the tokens.
    page.click("#sign-out")
    page.wait_for_selector("#login-form")
    assert page.evaluate("() => sessionStorage.getItem('ecogrid-tokens')") is None
    assert page.errors == []


def test_dark_mode_toggles_and_phone_layout(stack, page_for):
    page = page_for(OPERATOR, width=390, height=844)
    bg = "() => getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(bg)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    page.click("#theme-toggle")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert page.evaluate(bg) != light
    page.wait_for_selector("#site-map path[data-status]")
    # Phone-sized: nothing wider than the screen.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390 + 1
    shot(page, "overview-phone-dark")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(300)
    shot(page, "overview-dark")
    page.reload()  # the choice is kept
    page.wait_for_selector("#kpis")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    page.click("#theme-toggle")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    assert page.evaluate(bg) == light
    assert page.errors == []


def test_websocket_reconnects_with_back_off(stack, page_for):
    page = page_for(OPERATOR)
    # Close the live socket from the server side: the page shows it and reconnects.
    rt = stack["app"].state.runtime
    for client in list(rt.hub.clients.values()):
        client.closing = True
    page.wait_for_selector("#conn:not([data-state=live])", timeout=10_000)
    page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
    first = page.locator("#kpis").get_attribute("data-t-s")
    page.wait_for_function(
        f"() => document.querySelector('#kpis').dataset.tS !== '{first}'",
        timeout=KPI_PUSH_WAIT_MS)
    assert page.errors == []


def test_operator_rejects_a_plan_with_a_reason(stack, page_for):
    plan = stack["client"].post("/api/v1/plans", headers=stack["operator"]).json()
    page = page_for(OPERATOR)
    page.goto(f"{stack['url']}/#/dispatch")
    page.wait_for_selector("#plan-reject")
    assert page.locator("#plan-select").input_value() == plan["id"]
    page.once("dialog", lambda d: d.accept("prices look wrong"))
    page.click("#plan-reject")
    page.wait_for_function("() => document.querySelector('#plan-status')?.innerText === "
                           "'rejected'")
    assert page.locator("#plan-approve, #plan-reject").count() == 0
    rec = stack["client"].get(f"/api/v1/plans/{plan['id']}", headers=stack["viewer"],
                              params={"setpoints": False}).json()
    assert rec["status"] == "rejected" and rec["reason"] == "prices look wrong"
    assert "prices look wrong" in page.locator("#plan-panel").inner_text()
    assert page.errors == []
