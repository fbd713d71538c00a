"""Run the real app under uvicorn in a thread, for tests that talk HTTP and WebSocket."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from adapters.broker import free_port
from api.app import create_app
from api.settings import Settings

ADMIN = ("root", "root-pass-1")  # the admin account (user, password) the tests' apps start with


@contextmanager
def running_app(settings: Settings, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Yield ``(base_url, app)`` of the app served on a free local port."""
    app = create_app(settings, **kwargs)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(60)


def login(client: httpx.Client, name: str, password: str) -> dict[str, str]:
    """Authorization header of a fresh access token."""
    r = client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@contextmanager
def running_emulator(fleet: Any, url: str, interval_s: float = 0.5) -> Iterator[Any]:
    """The device emulator for ``fleet`` on the broker at ``url``, ticking in a thread."""
    from adapters.emulator import Emulator

    emu = Emulator(fleet, url, interval_s=interval_s)
    emu.connect(timeout_s=30)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            emu.run(0.5)

    thread = threading.Thread(target=loop, name="emulator-test", daemon=True)
    thread.start()
    try:
        yield emu
    finally:
        stop.set()
        thread.join(30)
        emu.stop()


def wait_for(check: Any, timeout_s: float = 30.0, every_s: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(every_s)


def add_user(client: httpx.Client, admin: dict[str, str], name: str, password: str,
             role: str) -> dict[str, str]:
    """Create a user as ``admin``; the headers of its login."""
    r = client.post("/api/v1/users", headers=admin,
                    json={"name": name, "password": password, "role": role})
    assert r.status_code == 201, r.text
    return login(client, name, password)


def add_staff(client: httpx.Client, admin: dict[str, str]) -> dict[str, dict[str, str]]:
    """Create operator ``olga`` and viewer ``vic`` as ``admin``; the three logins' headers."""
    return {"admin": admin,
            "operator": add_user(client, admin, "olga", "olga-pass-1", "operator"),
            "viewer": add_user(client, admin, "vic", "vic-pass-1", "viewer")}


@contextmanager
def ws_session(base: str, headers: dict[str, str]) -> Iterator[Any]:
    """A WebSocket on ``base``'s API with the token of ``headers``, past its welcome."""
    from websockets.sync.client import connect

    token = headers["Authorization"].split()[1]
    with connect(f"{base.replace('http', 'ws')}/api/v1/ws?token={token}",
                 open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        yield ws


def ws_until(ws: Any, pred: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """The next WebSocket message for which ``pred(message)`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if pred(msg):
            return msg
