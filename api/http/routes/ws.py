"""WebSocket ``/api/v1/ws``: authenticate, subscribe to channels, send requests.

Authenticate with ``?token=<access token>`` or with a first message
``{"type": "auth", "token": "..."}``. Then, as JSON messages:

* ``{"type": "subscribe", "channels": ["telemetry", "plans"], "sites": [...],
  "devices": [...], "id": "r1"}`` (``sites``/``devices`` restrict telemetry);
  ``{"type": "unsubscribe", "channels": [...]}``;
* ``{"type": "approve", "plan_id": "...", "id": "r2"}``, ``{"type": "reject",
  "plan_id": "...", "reason": "..."}``, ``{"type": "setpoint", "device_id":
  "...", "value_kw": 50}`` (operator or admin);
* ``{"type": "ping"}``.

Every request gets ``{"type": "reply", "id": <its id>, "ok": true, "result":
...}`` or ``{"type": "reply", "id": ..., "ok": false, "error": "..."}``.
Channel messages have ``type`` set to the channel. A client whose queue
overflows is throttled (telemetry and KPI messages dropped) or disconnected
with code 1013 (see :mod:`api.live.hub`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from adapters.registry import RegistryError
from api.accounts import AuthError
from api.http.deps import socket_runtime
from api.live.approvals import SetpointError
from api.live.hub import CHANNELS, WsClient
from api.live.runtime import Runtime
from api.live.types import ServiceUnavailable

log = logging.getLogger(__name__)
router = APIRouter()

AUTH_TIMEOUT_S = 10.0


async def _authenticate(ws: WebSocket, rt: Runtime) -> Any:
    token = ws.query_params.get("token")
    if not token:
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S))
        except (TimeoutError, ValueError):
            first = {}
        token = first.get("token") if isinstance(first, dict) else None
        if not token:
            raise AuthError("send {\"type\": \"auth\", \"token\": ...} first or use ?token=")
    return rt.accounts.authenticate(token, rt.clock())


async def _sender(ws: WebSocket, client: WsClient) -> None:
    while True:
        text = await client.queue.get()
        await ws.send_text(text)
        client.sent += 1


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    rt = socket_runtime(ws)
    await ws.accept()
    try:
        user = await _authenticate(ws, rt)
    except AuthError as exc:
        await ws.send_text(json.dumps({"type": "error", "error": str(exc)}))
        await ws.close(code=4401, reason="unauthorized")
        return
    client = rt.hub.connect(user.name, user.role)
    rt.metrics.ws_clients.set(len(rt.hub.clients))
    await ws.send_text(json.dumps({"type": "welcome", "user": user.name, "role": user.role,
                                   "channels": list(CHANNELS)}))
    sender = asyncio.create_task(_sender(ws, client))
    watcher = asyncio.create_task(_watch(ws, client))
    try:
        while True:
            try:
                text = await ws.receive_text()
            except WebSocketDisconnect:
                break
            reply = await _handle(rt, client, text)
            if reply is not None and not rt.hub.send(client, json.dumps(reply, default=str),
                                                     lossy=False):
                break
    finally:
        rt.hub.disconnect(client)
        rt.metrics.ws_clients.set(len(rt.hub.clients))
        sender.cancel()
        watcher.cancel()


async def _watch(ws: WebSocket, client: WsClient) -> None:
    """Close the socket when the hub gives up on the client (too slow)."""
    await client.wait_closing()  # an event: no polling per client
    try:
        await ws.close(code=1013, reason="too slow: messages were dropped")
    except (RuntimeError, WebSocketDisconnect):  # closed meanwhile
        pass


async def _handle(rt: Runtime, client: WsClient, text: str) -> dict[str, Any] | None:
    try:
        msg = json.loads(text)
    except ValueError:
        return {"type": "reply", "id": None, "ok": False, "error": "not JSON"}
    if not isinstance(msg, dict):
        return {"type": "reply", "id": None, "ok": False, "error": "expected a JSON object"}
    rid = msg.get("id")
    kind = msg.get("type")
    try:
        if kind == "ping":
            result: Any = {"pong": rt.clock()}
        elif kind == "subscribe":
            channels = msg.get("channels") or []
            if not isinstance(channels, list):
                raise ValueError("channels must be a list")
            rt.hub.subscribe(client, channels, _ids(msg, "sites"), _ids(msg, "devices"))
            result = {"channels": sorted(client.channels),
                      "sites": sorted(client.sites) if client.sites is not None else None,
                      "devices": sorted(client.devices) if client.devices is not None else None}
        elif kind == "unsubscribe":
            rt.hub.unsubscribe(client, list(msg.get("channels") or []))
            result = {"channels": sorted(client.channels)}
        elif kind in ("approve", "reject", "setpoint"):
            result = await run_in_threadpool(request, rt, client, msg)
        else:
            raise ValueError(f"unknown message type {kind!r}; use subscribe, unsubscribe, "
                             "approve, reject, setpoint or ping")
    except (ValueError, PermissionError, RegistryError, SetpointError,
            ServiceUnavailable) as exc:
        return {"type": "reply", "id": rid, "request": kind, "ok": False, "error": str(exc)}
    return {"type": "reply", "id": rid, "request": kind, "ok": True, "result": result}


def request(rt: Runtime, client: WsClient, msg: dict[str, Any]) -> Any:
    """Run one client request (``approve``, ``reject``, ``setpoint``) with the leader's
    approvals, or on a replica as the same REST call to the leader; returns its result.

    Raises PermissionError when the client's role may not do it.
    """
    kind = msg.get("type")
    if client.role not in ("operator", "admin"):
        raise PermissionError(f"{kind} needs the operator or admin role")
    user = client.user
    if kind == "setpoint":
        value = msg.get("value_kw")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError("setpoint needs a number 'value_kw' [kW]")
    if rt.leader_requests is not None:  # a replica: the leader decides
        leader = rt.leader_requests
        if kind == "approve":
            return leader.approve(_str(msg, "plan_id"), user, client.role)
        if kind == "reject":
            return leader.reject(_str(msg, "plan_id"), user, client.role, msg.get("reason"))
        return leader.setpoint(_str(msg, "device_id"), float(value), user, client.role)
    approvals = rt.part("approvals")
    if kind == "approve":
        return approvals.approve(_str(msg, "plan_id"), user)
    if kind == "reject":
        return approvals.reject(_str(msg, "plan_id"), user, reason=msg.get("reason"))
    return {"commands": approvals.setpoint(_str(msg, "device_id"), float(value), user)}


def _str(msg: dict[str, Any], key: str) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or not v:
        raise ValueError(f"the request needs a string {key!r}")
    return v


def _ids(msg: dict[str, Any], key: str) -> list[str] | None:
    v = msg.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{key} must be a list of ids")
    return v
