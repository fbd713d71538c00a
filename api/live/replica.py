"""Read replicas of the API: one leader writes, any number of replicas serve reads.

The leader (``ECOGRID_MODE=live``) is the single writer: it owns the command
publisher and its versions, the dispatch loop, the optimizer cadence, the
alert evaluation and the zarr history. A replica (``ECOGRID_MODE=replica``)
runs the same app on the same database, with

* its own telemetry subscription (:class:`ReplicaService`, a non-persistent
  session per pod), so ``GET /devices`` live values and the WebSocket
  ``telemetry`` channel are answered locally;
* the leader's WebSocket events (plans, commands, alerts, kpis), which the
  leader publishes to ``ecogrid/events/{channel}`` (:class:`EventsRelay`,
  ``ECOGRID_EVENTS_RELAY=true``) and the replica feeds into its own hub
  (:class:`EventsFeed`); ``GET /kpis`` answers from the newest relayed figures;
* every request it cannot answer from the database or its own arrays
  forwarded to the leader (:class:`ForwardToLeader`, :func:`needs_leader`):
  any method but GET/HEAD/OPTIONS, and the GETs in :data:`LEADER_GETS`;
  WebSocket ``approve``/``reject``/``setpoint`` requests become the
  corresponding REST calls (:meth:`ReplicaService.ws_request`).

docs/operations.md#scale and docs/architecture.md describe the deployment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from adapters.registry import Registry
from adapters.registry import fleet as fleet_repo
from api.accounts import make_access_token
from api.live.hub import Hub, WsClient, dumps
from api.live.service import LiveService, ServiceUnavailable
from api.settings import Settings
from twin.fleet import Fleet

log = logging.getLogger(__name__)

EVENTS_TOPIC = "ecogrid/events/{channel}"
EVENTS_FILTER = "ecogrid/events/#"
RELAYED: frozenset[str] = frozenset({"plans", "commands", "alerts", "kpis"})

# Methods a replica answers itself (when the path is not in LEADER_GETS); any other
# method changes something and goes to the leader.
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})

# GETs that need the leader's memory or files (its zarr telemetry history, scenario
# results, reports), as path patterns.
LEADER_GETS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"^/api/v1/devices/[^/]+/telemetry/?$",   # telemetry history (zarr)
    r"^/api/v1/history(/|$)",                 # fleet and site power history (zarr)
    r"^/api/v1/analytics(/|$)",               # energy aggregates (zarr)
    r"^/api/v1/reports(/|$)",                 # reports (zarr)
    r"^/api/v1/scenarios/[^/]+/series/?$",    # a run's results (files of the leader)
    r"^/graphql(/|$)",                        # mixes live values and history
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


def replica_client_id(kind: str) -> str:
    """An MQTT client id unique per pod and process: ``ecogrid-replica-{host}-{pid}-{kind}``."""
    return f"ecogrid-replica-{socket.gethostname()}-{os.getpid()}-{kind}"


def replica_fleet(registry: Registry, settings: Settings) -> Fleet:
    """The registry's fleet; a replica never imports one (that is the leader's job).

    Raises
    ------
    RuntimeError
        When the registry holds no fleet yet.
    """
    with registry.session() as s:
        fleet = fleet_repo.load_fleet(s)
    if fleet is None:
        raise RuntimeError("the registry has no fleet yet: start the leader "
                           f"({settings.leader_url}) first; a replica does not import one")
    return fleet


class LeaderError(ValueError):
    """The leader refused a forwarded WebSocket request, or could not be reached.

    A ``ValueError``, so the WebSocket handler answers it as a failed request
    (``{"ok": false, "error": ...}``), as it does on the leader.
    """


class Leader:
    """The HTTP client of a replica towards its leader (made and closed by the service).

    Parameters
    ----------
    url : str
        The leader's base URL (``http://ecogrid-leader:8000``).
    timeout_s : float
        Longest forwarded request [s] (a plan request waits for the solver).
    """

    def __init__(self, url: str, timeout_s: float = 120.0):
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.url, follow_redirects=False,
                                        timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.reachable: bool | None = None  # None: not checked yet
        self.status: str | None = None  # the leader's own /healthz status
        self.checked_s: float | None = None

    def unavailable(self, exc: BaseException) -> str:
        """The error message of a request the leader did not answer."""
        reason = str(exc) or type(exc).__name__
        return f"the leader {self.url} is unreachable ({reason}); try again shortly"

    async def check(self, now_s: float, timeout_s: float = 3.0) -> bool:
        """Ask the leader's ``/healthz``; any answer means reachable."""
        try:
            r = await self.client.get("/healthz", timeout=timeout_s)
            self.reachable = True
            self.status = r.json().get("status") if r.content else None
        except (httpx.HTTPError, ValueError, AttributeError):
            self.reachable, self.status = False, None
        self.checked_s = now_s
        return self.reachable

    def health(self) -> dict[str, Any]:
        return {"url": self.url, "reachable": self.reachable, "status": self.status,
                "checked_s": self.checked_s}

    async def call(self, method: str, path: str, token: str,
                   body: dict[str, Any] | None = None) -> Any:
        """A REST call as the user of ``token``; its JSON result.

        Raises
        ------
        PermissionError
            For a 401/403 answer.
        LeaderError
            For another error answer (its message) or an unreachable leader.
        """
        try:
            r = await self.client.request(method, path, json=body,
                                          headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise LeaderError(self.unavailable(exc)) from None
        if r.is_success:
            return r.json()
        try:
            message = r.json().get("error") or r.text
        except (ValueError, AttributeError):
            message = r.text or f"HTTP {r.status_code}"
        if r.status_code in (401, 403):
            raise PermissionError(message)
        raise LeaderError(message)

    async def aclose(self) -> None:
        await self.client.aclose()


class ForwardToLeader:
    """Pure ASGI middleware of a replica: requests in :func:`needs_leader` go to the leader.

    The body is read, the request sent with its headers (``Authorization``
    included, so the leader checks the user) plus ``X-Forwarded-For``/``-Proto``/
    ``-Host``; the leader's status, headers and body are streamed back. A leader
    that does not answer gives 503 ``{"error": "the leader URL is unreachable ...",
    "status": 503}``. The leader is ``scope["app"].state.service.leader``.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not needs_leader(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        svc = getattr(scope["app"].state, "service", None)
        leader = getattr(svc, "leader", None)
        if leader is None:  # not started (or not a replica): answer here
            await self.app(scope, receive, send)
            return
        status = await forward(leader, scope, receive, send)
        if status < 400 and scope["method"] not in READ_METHODS:
            svc.devices.invalidate()  # a fleet edit shows on this replica at once


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


class EventsRelay:
    """The leader's side: every hub event also goes to ``ecogrid/events/{channel}``.

    :meth:`tap` is the hub's tap (:attr:`api.live.hub.Hub.tap`, on the event loop): it
    serializes the message and queues it; a thread publishes what piled up,
    consecutive messages of one channel as one JSON array (QoS 0, not retained).
    """

    def __init__(self, client_id: str = "ecogrid-service-events", max_queued: int = 100_000):
        self.client_id = client_id
        self.max_queued = max_queued
        self._queue: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self.published = 0  # MQTT messages (batches) sent
        self.dropped = 0

    def tap(self, channel: str, message: dict[str, Any]) -> None:
        if channel not in RELAYED:
            return
        text = dumps(message)
        with self._lock:
            if len(self._queue) >= self.max_queued:  # the broker is away: keep the newest
                self._queue.pop(0)
                self.dropped += 1
            self._queue.append((channel, text))
        self._wake.set()

    def start(self, url: str, wait_s: float = 10.0) -> EventsRelay:
        from adapters.mqtt.client import connect, make_client

        client = make_client(self.client_id)
        connected = threading.Event()
        client.on_connect = lambda c, u, flags, reason, props: connected.set()
        connect(client, url, blocking=False)
        client.loop_start()
        self._client = client
        if wait_s and not connected.wait(wait_s):
            self.stop()
            raise ConnectionError(f"events relay could not connect to {url} within {wait_s} s")
        self._thread = threading.Thread(target=self._run, name="ecogrid-events-relay",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Publish everything queued, in order, one message per run of one channel."""
        with self._lock:
            out, self._queue = self._queue, []
        if not out or self._client is None:
            return
        runs: list[tuple[str, list[str]]] = []
        for channel, text in out:
            if runs and runs[-1][0] == channel:
                runs[-1][1].append(text)
            else:
                runs.append((channel, [text]))
        with self._client.corked():
            for channel, texts in runs:
                payload = "[" + ",".join(texts) + "]"
                self._client.publish(EVENTS_TOPIC.format(channel=channel), payload, qos=0,
                                     retain=False)
                self.published += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()


class EventsFeed:
    """The replica's side: ``ecogrid/events/#`` into the replica's hub.

    Parameters
    ----------
    hub : Hub
        Where the events go (:meth:`Hub.publish_threadsafe`).
    client_id : str
        MQTT client id (a non-persistent session).
    on_message : callable, optional
        ``fn(channel, message)`` for each event (the service keeps the newest KPIs).
    """

    def __init__(self, hub: Hub, client_id: str,
                 on_message: Callable[[str, dict[str, Any]], None] | None = None):
        self.hub = hub
        self.client_id = client_id
        self.on_message = on_message
        self.subscribed = threading.Event()
        self.received = 0
        self._client: Any = None

    def start(self, url: str, wait_s: float = 10.0) -> EventsFeed:
        from adapters.mqtt.client import connect, make_client

        client = make_client(self.client_id, persistent=False)

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            if not getattr(reason, "is_failure", False):
                c.subscribe(EVENTS_FILTER, qos=0)

        client.on_connect = on_connect
        client.on_subscribe = lambda c, u, mid, codes, props: self.subscribed.set()
        client.on_disconnect = lambda c, u, flags, reason, props: self.subscribed.clear()
        client.on_message = self._on_message
        connect(client, url, blocking=False)
        client.loop_start()
        self._client = client
        if wait_s and not self.subscribed.wait(wait_s):
            self.stop()
            raise ConnectionError(f"events feed could not subscribe to {EVENTS_FILTER} at "
                                  f"{url} within {wait_s} s")
        return self

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        channel = msg.topic.rsplit("/", 1)[-1]
        if channel not in RELAYED:
            return
        try:
            items = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("events feed: %s is not JSON; ignored", msg.topic)
            return
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                continue
            self.received += 1
            if self.on_message is not None:
                self.on_message(channel, item)
            self.hub.publish_threadsafe(channel, item)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()


class ReplicaService(LiveService):
    """A read replica's service: own telemetry, relayed events, the leader for the rest.

    No command publisher, dispatch, optimizer, history, alert or report loops
    and no planner. Made by the app's lifespan when ``settings.mode == "replica"``.
    """

    def __init__(self, settings: Settings, registry: Registry, fleet: Fleet, **kwargs: Any):
        kwargs.pop("planner", None)
        super().__init__(settings, registry, fleet, planner=None, **kwargs)
        assert settings.leader_url  # checked by Settings
        self.leader = Leader(settings.leader_url, settings.leader_timeout_s)
        self.devices.max_age_s = 30.0  # fleet edits go through the leader: see them soon
        self.events: EventsFeed | None = None
        self._relayed_kpis: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle ------------------------------------------------------------------
    def connect_broker(self, url: str | None = None, wait_s: float = 10.0) -> None:
        """Start this replica's own telemetry ingest and the events feed."""
        from adapters.mqtt.ingest import TelemetryIngest

        url = url or self.settings.mqtt_url
        ingest = TelemetryIngest(self.fleet, self.telemetry, persistent=False,
                                 client_id=replica_client_id("ingest"), clock=self.clock)
        ingest.add_listener("batch", self._on_batch)
        ingest.start(url, wait_s=wait_s)
        self.ingest = ingest
        self.events = EventsFeed(self.hub, replica_client_id("events"),
                                 on_message=self._on_event).start(url, wait_s=wait_s)

    def _on_event(self, channel: str, message: dict[str, Any]) -> None:
        if channel == "kpis" and isinstance(message.get("kpis"), dict):
            self._relayed_kpis = message["kpis"]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.hub.bind(self._loop)
        self._loop.run_in_executor(None, self._preload_devices)
        await self.leader.check(self.clock())
        self._tasks.append(asyncio.create_task(self._leader_loop(), name="ecogrid-leader"))

    async def _leader_loop(self, period_s: float = 5.0) -> None:
        while True:
            await asyncio.sleep(period_s)
            await self.leader.check(self.clock())

    async def close(self) -> None:
        await super().close()
        await self.leader.aclose()

    def _connections(self) -> tuple[Any, ...]:
        return self.events, self.ingest

    def _save_state(self) -> None:
        """Nothing: the KPI ledger is the leader's."""

    # -- reads -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The replica's own broker connection and database, and the leader's reachability
        (reported, not a reason to be unready: reads still work without the leader)."""
        body = super().health()
        events = self.events is not None and self.events.subscribed.is_set()
        body["status"] = ("ok" if body["database"] == "ok" and body["broker_connected"]
                          and events else "degraded")
        body.update(role="replica", events_connected=events, leader=self.leader.health())
        return body

    def cached_kpis(self, max_age_s: float = 1.5) -> dict[str, Any] | None:
        """The newest KPIs relayed from the leader (whatever their age; ``t_s`` says it)."""
        return self._relayed_kpis

    def refresh_kpis(self) -> dict[str, Any]:
        kpis = self._relayed_kpis
        if kpis is None:
            raise ServiceUnavailable("no KPIs relayed from the leader yet: the leader "
                                     f"({self.leader.url}) pushes them every few seconds "
                                     "with ECOGRID_EVENTS_RELAY=true")
        return kpis

    def snapshot(self) -> None:
        raise ServiceUnavailable("a replica keeps no telemetry history; ask the leader")

    # -- WebSocket requests ------------------------------------------------------------
    def ws_request(self, client: WsClient, msg: dict[str, Any]) -> dict[str, Any]:
        """Forward ``approve``/``reject``/``setpoint`` to the leader's REST API as the
        client's user; the result is what the leader's WebSocket would answer.

        Runs on a worker thread (as on the leader). The call carries a short-lived
        access token of the socket's user and role, signed with the shared secret:
        the socket's own token may have expired while the connection lives on.
        """
        kind = msg.get("type")
        if client.role not in ("operator", "admin"):
            raise PermissionError(f"{kind} needs the operator or admin role")
        body: dict[str, Any] | None = None
        if kind in ("approve", "reject"):
            path = f"/api/v1/plans/{quote(_text(msg, 'plan_id'), safe='')}/{kind}"
            if kind == "reject" and msg.get("reason") is not None:
                body = {"reason": msg["reason"]}
        elif kind == "setpoint":
            value = msg.get("value_kw")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError("setpoint needs a number 'value_kw' [kW]")
            path = f"/api/v1/devices/{quote(_text(msg, 'device_id'), safe='')}/setpoint"
            body = {"value_kw": float(value)}
        else:
            raise ValueError(f"unknown request type {kind!r}")
        token = make_access_token(self.accounts.secret, client.user, client.role, self.clock(),
                                  60.0)
        if self._loop is None:
            raise LeaderError("the replica is not started yet")
        call = self.leader.call("POST", path, token, body)
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            return future.result(self.settings.leader_timeout_s + 5.0)
        except TimeoutError:
            future.cancel()
            raise LeaderError(f"the leader {self.leader.url} did not answer in time") from None


def _text(msg: dict[str, Any], key: str) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or not v:
        raise ValueError(f"the request needs a string {key!r}")
    return v


def start_events_relay(svc: LiveService) -> EventsRelay:
    """Connect the leader's events relay and tap the service's hub (the app's lifespan)."""
    relay = EventsRelay().start(svc.settings.mqtt_url)
    svc.hub.tap = relay.tap
    return relay


def stop_events_relay(svc: LiveService, relay: EventsRelay) -> None:
    svc.hub.tap = None
    relay.stop()


__all__ = ["LEADER_GETS", "EventsFeed", "EventsRelay", "ForwardToLeader", "Leader",
           "LeaderError", "ReplicaService", "needs_leader", "replica_fleet",
           "start_events_relay", "stop_events_relay"]
