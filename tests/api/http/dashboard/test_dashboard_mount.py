"""``api.http.dashboard.mount_dashboard`` on a bare app: the page, its files, its settings."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from api.http.dashboard import HERE, VENDOR_FILES, missing_vendor_files, mount_dashboard


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


def test_tile_url_is_configurable_and_off_by_default(monkeypatch):
    monkeypatch.delenv("ECOGRID_MAP_TILE_URL", raising=False)
    assert _app().get("/dashboard/config.json").json()["tile_url"] is None
    monkeypatch.setenv("ECOGRID_MAP_TILE_URL", "http://tiles.local/{z}/{x}/{y}.png")
    assert _app().get("/dashboard/config.json").json()["tile_url"] == \
        "http://tiles.local/{z}/{x}/{y}.png"
    assert _app(tile_url="http://other/{z}/{x}/{y}.png").get(
        "/dashboard/config.json").json()["tile_url"] == "http://other/{z}/{x}/{y}.png"


def test_missing_libraries_are_named(tmp_path: Path):
    assert missing_vendor_files(tmp_path) == list(VENDOR_FILES)
    (tmp_path / "uplot").mkdir()
    (tmp_path / "uplot" / "uPlot.esm.js").write_text("export default 1;")
    assert "uplot/uPlot.esm.js" not in missing_vendor_files(tmp_path)
