"""What the dashboard's browser tests share: the Chromium they drive, the accounts they
sign in with, the stack's size and where screenshots go.

The fixtures (``stack``, ``browser``, ``page_for``) are in this package's
``conftest.py``: one stack and one browser for every browser test module.
"""

from __future__ import annotations

import shutil
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
