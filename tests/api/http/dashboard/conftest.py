"""One stack and one Chromium for all the dashboard's browser tests.

The stack is what ``ecogrid demo`` runs, small: a private Mosquitto, the device
emulator and the service with the optimizer, an operator and a viewer account.
``page_for((user, password))`` gives a fresh signed-in page; ``page.errors`` collects
the page's uncaught script errors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.broker import Broker
from api.live.planning import OptimizerPlanner
from api.settings import Settings
from tests.api.http.dashboard.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    N_SITES,
    OPERATOR,
    VIEWER,
    TileServer,
    require_browser,
)
from tests.api.server import ADMIN, login, running_app, running_emulator, wait_for
from twin.generator import generate_fleet


@pytest.fixture(scope="package")
def stack() -> Iterator[dict[str, Any]]:
    # A private folder, not pytest's basetemp: concurrent pytest runs on a shared machine
    # prune old basetemp folders, which would pull the registry and broker from under us.
    with tempfile.TemporaryDirectory(prefix="ecogrid-dashboard-") as tmp, \
            TileServer() as tiles:
        broker = Broker(Path(tmp) / "mosquitto").start()
        try:
            yield from _stack(Path(tmp) / "data", broker.url, tiles)
        finally:
            broker.stop()


def _stack(data_dir: Path, mqtt_url: str, tiles: TileServer) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=data_dir, mqtt_url=mqtt_url, map_tile_url=tiles.url,
                        map_tile_attribution="© test tiles",
                        fleet_sites=N_SITES, admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, dispatch_tick_s=0.2, history_flush_s=1.0,
                        telemetry_interval_s=0.5)
    fleet = generate_fleet(n_sites=N_SITES)
    with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
            running_app(settings, planner=OptimizerPlanner(time_limit_s=30)) as (url, app), \
            httpx.Client(base_url=url, timeout=60) as client:
        admin = login(client, *ADMIN)
        for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
            r = client.post("/api/v1/users", headers=admin,
                            json={"name": name, "password": password, "role": role})
            assert r.status_code == 201, r.text
        wait_for(lambda: client.get("/healthz").json()["last_ingest_s"])
        yield {"url": url, "app": app, "emu": emu, "client": client, "fleet": fleet,
               "admin": admin, "operator": login(client, *OPERATOR),
               "viewer": login(client, *VIEWER), "data_dir": data_dir, "tiles": tiles}


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    sync_api = require_browser()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page_for(browser: Any, stack: dict[str, Any]) -> Iterator[Any]:
    """``page_for((user, password), width, height)``: a fresh signed-in page."""
    contexts = []

    def make(user: tuple[str, str], width: int = 1280, height: int = 900,
             color_scheme: str = "light", accept_downloads: bool = True) -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=color_scheme,
                                  accept_downloads=accept_downloads)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        page.goto(stack["url"] + "/")
        page.fill("#login-user", user[0])
        page.fill("#login-password", user[1])
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#kpis")
        page.wait_for_selector("#conn[data-state=live]")
        return page

    yield make
    for ctx in contexts:
        ctx.close()
