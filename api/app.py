"""The FastAPI application: REST under ``/api/v1``, the WebSocket, ``/healthz``, ``/metrics``.

:func:`create_app` builds the app; its lifespan opens the registry (applying
migrations), makes the first admin, loads the fleet (importing the
configured or generated fleet into an empty registry), builds the
:class:`~api.live.service.LiveService`, connects it to the broker (unless
``mode="offline"``; ``mode="replica"``: a read replica, :mod:`api.live.replica`) and
starts its loops; on shutdown it closes them in
reverse order. Tests and ``ecogrid serve`` use the same function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from adapters.registry import Registry, open_registry
from adapters.registry import fleet as fleet_repo
from api.http import errors
from api.http.routes import (
    alerts,
    analytics,
    auth,
    fleet,
    history,
    operations,
    scenarios,
    system,
    ws,
)
from api.live import replica
from api.live.logs import RequestIdMiddleware
from api.live.service import LiveService
from api.live.types import Planner
from api.settings import Settings
from twin.fleet import Fleet

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def load_or_import_fleet(registry: Registry, settings: Settings) -> Fleet:
    """The registry's fleet; an empty registry first gets the configured or generated one."""
    with registry.session() as s:
        fleet = fleet_repo.load_fleet(s)
    if fleet is not None:
        return fleet
    if settings.fleet_file is not None:
        from twin.fleet import read_fleet

        fleet = read_fleet(settings.fleet_file)
    else:
        from twin.generator import generate_fleet

        fleet = generate_fleet(n_sites=settings.fleet_sites)
    with registry.session() as s:
        n = fleet_repo.import_fleet(s, fleet)
    log.info("registry was empty: imported %d sites and %d devices", fleet.n_sites, n)
    with registry.session() as s:
        loaded = fleet_repo.load_fleet(s)
    assert loaded is not None
    return loaded


def default_planner(settings: Settings | None = None) -> Planner | None:
    """The optimizer's live planner, or None when the optimizer is not installed.

    With ``settings.optimizer_process`` (the default) a
    :class:`~api.live.planning.ProcessPlanner`: the optimizer runs in a worker
    process, so a solve does not hold the service's GIL and stall the API;
    the caller closes it (``close()``) when done. Otherwise the in-process
    :class:`~api.live.planning.OptimizerPlanner`.
    """
    try:
        import optimizer.dispatch  # noqa: F401  (the worker needs it too)
        from api.live.planning import OptimizerPlanner, ProcessPlanner
    except ImportError as exc:  # pragma: no cover - depends on the optimizer package
        log.warning("no optimizer available (%s); plans cannot be computed", exc)
        return None
    if settings is None or settings.optimizer_process:
        return ProcessPlanner(nice=settings.optimizer_nice if settings is not None else 10)
    return OptimizerPlanner()


def _close_planner(planner: Planner | None) -> None:
    """Close a planner that holds resources (the worker of a ProcessPlanner)."""
    close = getattr(planner, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the planner failed")


def create_app(settings: Settings | None = None, *, planner: Planner | None = None,
               use_default_planner: bool = True, clock: Callable[[], float] = time.time,
               on_ready: Callable[[LiveService], Any] | None = None) -> FastAPI:
    """Build the API app.

    Parameters
    ----------
    settings : Settings, optional
        Configuration (default: from the environment).
    planner : Planner, optional
        The plan computation; default: the optimizer's (``use_default_planner``),
        see :func:`default_planner`; the app closes the default one on shutdown.
    clock : callable
        ``() -> Unix s`` for the service.
    on_ready : callable, optional
        Called with the service once it runs (the demo prints credentials).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = await run_in_threadpool(open_registry, settings.registry_url())
        svc: LiveService | None = None
        own_planner: Planner | None = None  # made here, so closed here
        relay: Any = None  # the leader's events relay (api.live.replica)
        try:
            if settings.mode == "replica":  # a read replica: no planner, no admin, no import
                fleet = await run_in_threadpool(replica.replica_fleet, registry, settings)
                svc = replica.ReplicaService(settings, registry, fleet, clock=clock)
                app.state.first_admin = None
            else:
                fleet = await run_in_threadpool(load_or_import_fleet, registry, settings)
                if planner is None and use_default_planner:
                    own_planner = plan_fn = default_planner(settings)
                else:
                    plan_fn = planner
                svc = LiveService(settings, registry, fleet, planner=plan_fn, clock=clock)
                created = await run_in_threadpool(svc.accounts.ensure_admin,
                                                  settings.admin_user, settings.admin_password,
                                                  clock())
                app.state.first_admin = created
            if settings.mode in ("live", "replica"):
                await run_in_threadpool(svc.connect_broker)
            if settings.mode == "live" and settings.events_relay:
                relay = await run_in_threadpool(replica.start_events_relay, svc)
            await svc.start()
            app.state.service = svc
            if on_ready is not None:
                on_ready(svc)
            yield
        finally:
            if relay is not None:
                await run_in_threadpool(replica.stop_events_relay, svc, relay)
            if svc is not None:
                await svc.close()
            await run_in_threadpool(_close_planner, own_planner)
            registry.close()

    app = FastAPI(title="EcoGrid twin", version="1", lifespan=lifespan,
                  description="Live operation of a renewable fleet: fleet registry, telemetry, "
                  "KPIs, dispatch plans and their approval, setpoints, alerts, scenarios. "
                  "Errors are JSON: {\"error\": message, \"status\": code}.")
    errors.install(app)
    for r in (auth.router, fleet.router, operations.router, scenarios.router, ws.router):
        app.include_router(r, prefix=API_PREFIX)
    app.include_router(system.router)
    app.include_router(alerts.router, prefix=API_PREFIX)
    app.include_router(analytics.router, prefix=API_PREFIX)
    app.include_router(history.router, prefix=API_PREFIX)
    from api.http.graphql import graphql_router  # issue 7: read-only GraphQL

    app.include_router(graphql_router(), prefix="/graphql")
    from api.http.dashboard import mount_dashboard

    mount_dashboard(app)  # the operator's dashboard at / (static files; after the API routes)

    if settings.mode == "replica":  # writes and the leader's files go to the leader
        app.add_middleware(replica.ForwardToLeader)
    app.add_middleware(LatencyMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line carries request_id
    return app


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
            svc = getattr(scope["app"].state, "service", None)
            if svc is not None:
                path = getattr(scope.get("route"), "path", "unmatched")
                svc.metrics.http_latency.labels(scope["method"], path, str(status[0])).observe(
                    time.perf_counter() - t0)
