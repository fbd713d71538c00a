"""A read replica's link to its leader.

The leader (``ECOGRID_MODE=live``) is the single writer: it owns the command
publisher and its versions, the approvals, the optimizer cadence, the alert
evaluation and (with embedded ingest) the telemetry store's writer. A replica
(``ECOGRID_MODE=replica``) is the same runtime with fewer parts started
(:mod:`api.live.runtime`): its own telemetry subscription, the leader's
relayed WebSocket events (:mod:`adapters.mqtt.events`), the shared registry
and telemetry store, and

* :class:`Leader`: the HTTP client towards the leader; the app's
  ``ForwardToLeader`` middleware (:mod:`api.http.middleware`) sends every
  write through it;
* :class:`LeaderRequests`: the WebSocket requests ``approve``/``reject``/
  ``setpoint`` of a replica's clients, as the same REST calls to the leader;
* :class:`RelayedKpis`: ``GET /kpis`` answered from the newest figures the
  leader relayed.

docs/operations.md#scale and docs/architecture.md describe the deployment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any
from urllib.parse import quote

import httpx

from api.accounts import make_access_token
from api.live.types import Clock, ServiceUnavailable

log = logging.getLogger(__name__)


def replica_client_id(kind: str) -> str:
    """An MQTT client id unique per pod and process: ``ecogrid-replica-{host}-{pid}-{kind}``."""
    return f"ecogrid-replica-{socket.gethostname()}-{os.getpid()}-{kind}"


class LeaderError(ValueError):
    """The leader refused a forwarded WebSocket request, or could not be reached.

    A ``ValueError``, so the WebSocket handler answers it as a failed request
    (``{"ok": false, "error": ...}``), as it does on the leader.
    """


class Leader:
    """The HTTP client of a replica towards its leader.

    Parameters
    ----------
    url : str
        The leader's base URL (``http://ecogrid-leader:8000``).
    timeout_s : float
        Longest forwarded request [s] (a plan request waits for the solver).
    """

    def __init__(self, url: str, timeout_s: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
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

    async def run(self, clock: Clock, period_s: float = 5.0) -> None:
        """Check the leader every ``period_s`` [s] (reported in ``/healthz``)."""
        while True:
            await self.check(clock())
            await asyncio.sleep(period_s)

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


class LeaderRequests:
    """A replica's WebSocket requests, sent to the leader's REST API as the client's user.

    The same methods as the leader's approvals take (:meth:`approve`, :meth:`reject`,
    :meth:`setpoint`), called on a worker thread. Each call carries a short-lived
    access token of the socket's user and role, signed with the shared secret: the
    socket's own token may have expired while the connection lives on.

    Parameters
    ----------
    leader : Leader
    secret : str
        The JWT secret the leader and its replicas share.
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, leader: Leader, secret: str, clock: Clock):
        self.leader = leader
        self.secret = secret
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the leader's HTTP client runs on (the app's)."""
        self._loop = loop

    def approve(self, plan_id: str, user: str, role: str) -> Any:
        return self._call(f"/api/v1/plans/{quote(plan_id, safe='')}/approve", None, user, role)

    def reject(self, plan_id: str, user: str, role: str, reason: str | None = None) -> Any:
        body = {"reason": reason} if reason is not None else None
        return self._call(f"/api/v1/plans/{quote(plan_id, safe='')}/reject", body, user, role)

    def setpoint(self, device_id: str, value_kw: float, user: str, role: str) -> Any:
        return self._call(f"/api/v1/devices/{quote(device_id, safe='')}/setpoint",
                          {"value_kw": value_kw}, user, role)

    def _call(self, path: str, body: dict[str, Any] | None, user: str, role: str) -> Any:
        if self._loop is None:
            raise LeaderError("the replica is not started yet")
        token = make_access_token(self.secret, user, role, self.clock(), 60.0)
        future = asyncio.run_coroutine_threadsafe(self.leader.call("POST", path, token, body),
                                                  self._loop)
        try:
            return future.result(self.leader.timeout_s + 5.0)
        except TimeoutError:
            future.cancel()
            raise LeaderError(f"the leader {self.leader.url} did not answer in time") from None


class RelayedKpis:
    """The newest fleet KPIs the leader relayed (``GET /kpis`` on a replica)."""

    def __init__(self, leader_url: str):
        self.leader_url = leader_url
        self._kpis: dict[str, Any] | None = None

    def on_event(self, channel: str, message: dict[str, Any]) -> None:
        """The events feed's listener: keep the newest ``kpis`` event."""
        if channel == "kpis" and isinstance(message.get("kpis"), dict):
            self._kpis = message["kpis"]

    def cached(self) -> dict[str, Any] | None:
        """The newest relayed figures (whatever their age; ``t_s`` says it)."""
        return self._kpis

    def refresh(self) -> dict[str, Any]:
        if self._kpis is None:
            raise ServiceUnavailable("no KPIs relayed from the leader yet: the leader "
                                     f"({self.leader_url}) pushes them every few seconds "
                                     "with ECOGRID_EVENTS_RELAY=true")
        return self._kpis
