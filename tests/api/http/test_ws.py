"""WebSocket over a real socket: authentication, requests with ids, and a slow client that
is dropped while a fast one receives everything."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from api.settings import Settings
from tests.api.server import ADMIN, login, running_app, wait_for

pytestmark = pytest.mark.timeout(300)  # a hang fails with every thread's stack



@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, dict]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ws"), mode="offline", fleet_sites=2,
                        admin_user=ADMIN[0], admin_password=ADMIN[1], optimizer_enabled=False,
                        ws_queue_size=32, ws_max_drops=20)
    with running_app(settings, use_default_planner=False) as (url, app), \
            httpx.Client(base_url=url, timeout=60) as c:
        yield url, app, login(c, *ADMIN)


def _url(base: str, headers: dict[str, str] | None = None) -> str:
    url = f"{base.replace('http', 'ws')}/api/v1/ws"
    return url + (f"?token={headers['Authorization'].split()[1]}" if headers else "")


def test_tampered_token_is_refused(served):
    base, _, admin = served
    token = admin["Authorization"].split()[1]
    with ws_connect(_url(base) + f"?token={token[:-3]}xyz", open_timeout=30) as ws:
        msg = json.loads(ws.recv(timeout=10))
        assert msg["type"] == "error" and "invalid token" in msg["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4401


def test_auth_message_subscribe_and_bad_requests(served):
    base, _, admin = served
    with ws_connect(_url(base), open_timeout=30) as ws:
        ws.send(json.dumps({"type": "auth", "token": admin["Authorization"].split()[1]}))
        assert json.loads(ws.recv(timeout=10))["role"] == "admin"
        ws.send(json.dumps({"type": "subscribe", "channels": ["weather"], "id": 7}))
        r = json.loads(ws.recv(timeout=10))
        assert (r["id"], r["ok"]) == (7, False) and "unknown channel" in r["error"]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["error"] == "not JSON"
        ws.send(json.dumps({"type": "setpoint", "device_id": "ghost", "value_kw": 1,
                            "id": "x"}))
        r = json.loads(ws.recv(timeout=10))
        assert r["id"] == "x" and not r["ok"] and "no device" in r["error"]
        ws.send(json.dumps({"type": "approve", "plan_id": "nope", "id": "y"}))
        r = json.loads(ws.recv(timeout=10))
        assert r["id"] == "y" and not r["ok"] and "no plan" in r["error"]


def _stalled_client(base: str, headers: dict[str, str]) -> socket.socket:
    """A WebSocket client that subscribes to telemetry and then never reads (tiny buffer)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    token = headers["Authorization"].split()[1]
    sock.sendall((f"GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"type": "subscribe", "channels": ["telemetry"]}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)  # one masked text frame
    return sock


def test_slow_client_is_dropped_fast_client_gets_everything(served):
    base, app, admin = served
    rt = app.state.runtime
    n_messages = 150
    samples = [{"id": f"D{i:05d}", "site_id": "S", "p_kw": float(i), "soc": 0.5,
                "t_s": 1.0} for i in range(1500)]  # about 100 kB per message
    got: list[float] = []
    ready = threading.Event()

    def fast() -> None:
        with ws_connect(_url(base, admin), open_timeout=30, max_size=None) as ws:
            ws.recv(timeout=10)
            ws.send(json.dumps({"type": "subscribe", "channels": ["telemetry"]}))
            ws.recv(timeout=10)
            ready.set()
            while len(got) < n_messages:
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] == "telemetry":
                    got.append(msg["t_s"])

    reader = threading.Thread(target=fast)
    reader.start()
    slow = _stalled_client(base, admin)
    try:
        assert ready.wait(30)
        wait_for(lambda: sum("telemetry" in c.channels for c in rt.hub.clients.values()) == 2)
        for i in range(n_messages):
            rt.hub.call_soon(rt.hub.publish_telemetry, float(i), samples)
            time.sleep(0.03)
        reader.join(120)
        assert wait_for(lambda: rt.hub.dropped_clients >= 1, timeout_s=30)
    finally:
        slow.close()
    assert got == [float(i) for i in range(n_messages)]  # nothing lost, in order
    assert "ecogrid_ws_slow_clients_dropped_total 1.0" in httpx.get(f"{base}/metrics").text


def test_a_client_given_up_on_is_closed_with_1013(served):
    base, app, admin = served
    rt = app.state.runtime
    with ws_connect(_url(base, admin), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        assert wait_for(lambda: len(rt.hub.clients) == 1)
        (client,) = rt.hub.clients.values()
        rt.hub.call_soon(rt.hub._give_up, client)  # as when its queue overflows
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1013
    assert wait_for(lambda: client.id not in rt.hub.clients)
