"""What the dashboard's browser tests share: the Chromium they drive, the accounts they
sign in with, the stack's size and where screenshots go.

The fixtures (``stack``, ``browser``, ``page_for``) are in this package's
``conftest.py``: one stack and one browser for every browser test module.
"""

from __future__ import annotations

import shutil
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.http.dashboard import missing_vendor_files

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[4] / "artifacts" / "screenshots"
OPERATOR = ("olga", "olga-pass-1")
VIEWER = ("vic", "vic-pass-1")
N_SITES = 3
SCENARIO = """name: {name}
seed: 1
fleet:
  generator: {{n_sites: 2, seed: 0}}
period:
  start: 2025-06-03T00:00
  end: 2025-06-04T00:00
  step: 1h
  timezone: Europe/Berlin
strategy:
  kind: {kind}
"""


def require_browser() -> Any:
    """Playwright's sync API; skips the calling module when Playwright, Chromium or the
    dashboard's front-end libraries are missing (saying how to get them)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not "
                                   "installed: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or "
                    "./bootstrap setup)", allow_module_level=True)
    if missing_vendor_files():
        pytest.skip("the dashboard's front-end libraries are not built "
                    f"({', '.join(missing_vendor_files())}): run ./bootstrap setup",
                    allow_module_level=True)
    return sync_api


def shot(page: Any, name: str) -> None:
    """A full-page screenshot to ``artifacts/screenshots/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG (what a tile server answers, without one at hand)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


class TileServer:
    """A local map tile server (``/tiles/{z}/{x}/{y}.png``) for the map's basemap, with a
    switch to take it down: the dashboard must then fall back to a plain background.

    ``served`` counts the tiles answered.
    """

    TILE = _png(256, 256, (205, 221, 214))

    def __init__(self) -> None:
        self.down = False
        self.served = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = not server.down and self.path.startswith("/tiles/") and \
                    self.path.endswith(".png")
                body = TileServer.TILE if ok else b"down"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "image/png" if ok else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)
                if ok:
                    server.served += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiles/{{z}}/{{x}}/{{y}}.png"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
