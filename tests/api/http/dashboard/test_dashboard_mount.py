"""``api.http.dashboard.mount_dashboard`` on a bare app: the page, its files, its settings."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from api.http.dashboard import HERE, VENDOR_FILES, missing_vendor_files, mount_dashboard
from api.settings import Settings


class _Client:
    """Requests to an ASGI app in-process (httpx's ASGI transport, no server), each on an
    event loop in a thread of its own: Playwright's sync API may hold this thread's."""

    def __init__(self, app: FastAPI):
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.get(path)

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()


def _app(**kwargs: Any) -> _Client:
    app = FastAPI()

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:
        return {"pong": True}

    mount_dashboard(app, **kwargs)
    return _Client(app)


def test_page_modules_and_api_routes_coexist():
    c = _app()
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'type="module" src="/js/main.js"' in r.text
    assert c.get("/js/main.js").headers["content-type"].startswith(("text/javascript",
                                                                     "application/javascript"))
    assert c.get("/css/dashboard.css").status_code == 200
    assert c.get("/api/v1/ping").json() == {"pong": True}
    assert c.get("/js/nope.js").status_code == 404
    assert c.get("/__init__.py").status_code in (404, 405)  # the package's code is not served


def test_every_module_the_page_imports_exists():
    js = HERE / "js"
    for path in js.rglob("*.js"):
        for line in path.read_text().splitlines():
            if " from \"./" in line or " from \"../" in line or "import(\"./" in line:
                target = line.split('"')[1]
                assert (path.parent / target).resolve().is_file(), (path, target)


def test_tile_url_comes_from_the_settings_openstreetmap_by_default(monkeypatch):
    for name in ("ECOGRID_MAP_TILE_URL", "ECOGRID_MAP_TILE_ATTRIBUTION"):
        monkeypatch.delenv(name, raising=False)
    default = Settings()
    assert default.map_tile_url == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert "OpenStreetMap" in default.map_tile_attribution
    monkeypatch.setenv("ECOGRID_MAP_TILE_URL", "none")
    assert Settings().map_tile_url is None  # offline sites: no basemap
    monkeypatch.setenv("ECOGRID_MAP_TILE_URL", "https://tiles.local/{z}/{x}/{y}.png")
    assert Settings().map_tile_url == "https://tiles.local/{z}/{x}/{y}.png"
    monkeypatch.setenv("ECOGRID_MAP_TILE_URL", "tiles.local/map.png")
    with pytest.raises(ValidationError, match="is not a tile URL template"):
        Settings()
    config = _app(tile_url="http://other/{z}/{x}/{y}.png", tile_attribution="© Other").get(
        "/dashboard/config.json").json()
    assert config["tile_url"] == "http://other/{z}/{x}/{y}.png"
    assert config["tile_attribution"] == "© Other"
    assert _app().get("/dashboard/config.json").json()["tile_url"] is None


def test_missing_libraries_are_named(tmp_path: Path):
    assert missing_vendor_files(tmp_path) == list(VENDOR_FILES)
    (tmp_path / "uplot").mkdir()
    (tmp_path / "uplot" / "uPlot.esm.js").write_text("export default 1;")
    assert "uplot/uPlot.esm.js" not in missing_vendor_files(tmp_path)
