"""The operator's dashboard: static files served at ``/``, built on the public API only.

The page (``index.html``), its ES modules (``js/``), its style sheet (``css/``) and
the front-end libraries (``vendor/``, filled by ``./bootstrap setup`` from
``web/node_modules``) live in this package. :func:`mount_dashboard` adds them to
the FastAPI app: ``GET /`` answers the page; ``/js``, ``/css`` and ``/vendor``
the files; ``GET /dashboard/config.json`` the page's settings (the map's tile
URL and attribution, ``ECOGRID_MAP_TILE_URL`` and ``ECOGRID_MAP_TILE_ATTRIBUTION``
in the service's settings: without a URL, or when its tiles cannot be had, the map
draws the sites on a plain background with a notice and needs no internet).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
VENDOR_DIR = HERE / "vendor"
#: Files the page imports from ``vendor/`` (``./bootstrap setup`` copies them there).
VENDOR_FILES: tuple[str, ...] = ("leaflet/leaflet-src.esm.js", "leaflet/leaflet.css",
                                 "uplot/uPlot.esm.js", "uplot/uPlot.min.css")


def missing_vendor_files(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """The front-end library files that are not in ``vendor_dir`` (empty when built)."""
    return [f for f in VENDOR_FILES if not (vendor_dir / f).is_file()]


def mount_dashboard(app: FastAPI, *, tile_url: str | None = None,
                    tile_attribution: str = "") -> None:
    """Serve the dashboard at ``/`` of ``app``.

    Call it after the API's routers are included: the API's routes keep
    precedence over the static mounts.

    Parameters
    ----------
    app : FastAPI
        The API application.
    tile_url : str, optional
        Map tile URL template (``https://.../{z}/{x}/{y}.png``); none: no basemap, the
        sites on a plain background.
    tile_attribution : str
        Attribution shown with the tiles (HTML).
    """
    missing = missing_vendor_files()
    if missing:
        log.warning("dashboard libraries missing in %s (%s): run ./bootstrap setup",
                    VENDOR_DIR, ", ".join(missing))
    config: dict[str, Any] = {
        "tile_url": tile_url or None,
        "tile_attribution": tile_attribution,
        "vendor_missing": missing,
    }

    async def index() -> FileResponse:
        return FileResponse(HERE / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    async def dashboard_config() -> JSONResponse:
        return JSONResponse(config)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/dashboard/config.json", dashboard_config, methods=["GET"],
                      include_in_schema=False)
    app.mount("/js", StaticFiles(directory=HERE / "js"), name="dashboard-js")
    app.mount("/css", StaticFiles(directory=HERE / "css"), name="dashboard-css")
    app.mount("/vendor", StaticFiles(directory=VENDOR_DIR, check_dir=False),
              name="dashboard-vendor")
