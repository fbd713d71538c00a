"""ASGI middleware of the app: request ids in the logs, request latency in the metrics, and
a replica's forwarding of writes (and of the GETs it cannot answer) to the leader."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Any

import httpx
import orjson

from api.live.logs import log_context
from api.live.replica import Leader

log = logging.getLogger(__name__)

# Methods a replica answers itself (when the path is not in LEADER_GETS); any other
# method changes something and goes to the leader.
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})

# GETs that need the leader's files, as path patterns. (Telemetry history, analytics and
# reports come from the one telemetry store, which every pod reads: ECOGRID_HISTORY_URL.)
LEADER_GETS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"^/api/v1/scenarios/[^/]+/series/?$",    # a run's results (files of the leader)
))

# Headers not passed through a proxy (RFC 9110 7.6.1), plus those the other side sets.
_HOP_BY_HOP: frozenset[bytes] = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"})
_RESPONSE_DROP: frozenset[bytes] = (_HOP_BY_HOP - {b"content-length"}) | {b"date", b"server"}


def needs_leader(method: str, path: str) -> bool:
    """True when a replica forwards the HTTP request ``method path`` to the leader."""
    if method.upper() not in READ_METHODS:
        return True
    return any(p.match(path) for p in LEADER_GETS)

_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class RequestIdMiddleware:
    """ASGI middleware: every HTTP request and WebSocket runs inside
    ``log_context(request_id=...)``.

    The id is the client's ``X-Request-ID`` header when it is a short token
    (at most 64 characters of ``[A-Za-z0-9-_.:]``), otherwise a new random one;
    HTTP responses carry it back in ``X-Request-ID``.

        app.add_middleware(RequestIdMiddleware)
    """

    header = b"x-request-id"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = None
        for key, value in scope.get("headers", []):
            if key == self.header:
                text = value.decode("latin-1")
                if 0 < len(text) <= 64 and set(text) <= _REQUEST_ID_OK:
                    request_id = text
                break
        if request_id is None:
            request_id = secrets.token_hex(8)
        raw = request_id.encode()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != self.header]
                message = {**message, "headers": [*headers, (self.header, raw)]}
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class LatencyMiddleware:
    """Pure ASGI middleware: request latency per method, route template and status."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            rt = getattr(scope["app"].state, "runtime", None)
            if rt is not None:
                path = getattr(scope.get("route"), "path", "unmatched")
                rt.metrics.http_latency.labels(scope["method"], path, str(status[0])).observe(
                    time.perf_counter() - t0)


class ForwardToLeader:
    """Pure ASGI middleware of a replica: requests in :func:`needs_leader` go to the leader.

    The body is read, the request sent with its headers (``Authorization``
    included, so the leader checks the user) plus ``X-Forwarded-For``/``-Proto``/
    ``-Host``; the leader's status, headers and body are streamed back. A leader
    that does not answer gives 503 ``{"error": "the leader URL is unreachable ...",
    "status": 503}``. The leader is the runtime's ``leader`` part; after a change
    that went through, the replica checks its fleet version at once.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not needs_leader(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        rt = getattr(scope["app"].state, "runtime", None)
        leader: Leader | None = None if rt is None else rt.leader
        if leader is None:  # not started (or not a replica): answer here
            await self.app(scope, receive, send)
            return
        status = await forward(leader, scope, receive, send)
        if status < 400 and scope["method"] not in READ_METHODS:
            await asyncio.to_thread(rt.fleet.reload)  # a fleet edit shows here at once


def _forward_headers(scope: Any) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
    client = scope.get("client")
    peer = client[0].encode() if client else b"unknown"
    prior = [v for k, v in headers if k == b"x-forwarded-for"]
    headers = [(k, v) for k, v in headers
               if k not in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")]
    headers.append((b"x-forwarded-for", b", ".join([*prior, peer])))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    if host:
        headers.append((b"x-forwarded-host", host))
    return headers


async def forward(leader: Leader, scope: Any, receive: Any, send: Any) -> int:
    """Send one HTTP request (ASGI ``scope``/``receive``) to the leader and stream back
    its answer through ``send``; returns the status sent (503: the leader did not answer)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 499  # the client went away
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    target = scope.get("raw_path") or scope["path"].encode()
    url = target.decode("latin-1")
    if scope.get("query_string"):
        url += "?" + scope["query_string"].decode("latin-1")
    request = leader.client.build_request(scope["method"], url, headers=_forward_headers(scope),
                                          content=bytes(body))
    try:
        response = await leader.client.send(request, stream=True)
    except httpx.HTTPError as exc:
        log.warning("forwarding %s %s failed: %s", scope["method"], scope["path"], exc)
        text = orjson.dumps({"error": leader.unavailable(exc), "status": 503})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})
        return 503
    try:
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(k, v) for k, v in response.headers.raw
                                if k.lower() not in _RESPONSE_DROP]})
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:  # the leader went away mid-answer: end it here
            log.warning("the leader's answer to %s %s broke off: %s", scope["method"],
                        scope["path"], exc)
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()
    return response.status_code
