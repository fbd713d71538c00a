"""The FastAPI application: REST under ``/api/v1``, the WebSocket, ``/healthz``, ``/metrics``,
GraphQL and the dashboard.

:func:`create_app` builds the app; its lifespan opens the live runtime
(:meth:`api.live.runtime.Runtime.open`: the registry, the fleet, the parts of
the role in ``ECOGRID_MODE``), hands it to the handlers as ``app.state.runtime``
and closes it on shutdown. Tests and ``ecogrid serve`` use the same function.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.http import errors
from api.http.dashboard import mount_dashboard
from api.http.graphql import graphql_router
from api.http.middleware import ForwardToLeader, LatencyMiddleware, RequestIdMiddleware
from api.http.routes import (
    alerts,
    analytics,
    auth,
    fleet,
    operations,
    scenarios,
    system,
    ws,
)
from api.live.runtime import Runtime
from api.live.types import Planner
from api.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, planner: Planner | None = None,
               use_default_planner: bool = True, clock: Callable[[], float] = time.time,
               on_ready: Callable[[Runtime], Any] | None = None) -> FastAPI:
    """Build the API app.

    Parameters
    ----------
    settings : Settings, optional
        Configuration (default: from the environment).
    planner : Planner, optional
        The plan computation; default: the optimizer's (``use_default_planner``),
        see :func:`api.live.runtime.default_planner`; the runtime closes the default one.
    clock : callable
        ``() -> Unix s`` for the runtime.
    on_ready : callable, optional
        Called with the runtime once it runs (the demo prints credentials).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime.open(settings, planner=planner,
                                use_default_planner=use_default_planner, clock=clock) as rt:
            app.state.runtime = rt
            app.state.first_admin = rt.first_admin
            if on_ready is not None:
                on_ready(rt)
            yield

    app = FastAPI(title="EcoGrid twin", version="1", lifespan=lifespan,
                  description="Live operation of a renewable fleet: fleet registry, telemetry, "
                  "KPIs, dispatch plans and their approval, setpoints, alerts, scenarios. "
                  "Errors are JSON: {\"error\": message, \"status\": code}.")
    errors.install(app)
    for r in (auth.router, fleet.router, operations.router, alerts.router, analytics.router,
              scenarios.router, ws.router):
        app.include_router(r, prefix=API_PREFIX)
    app.include_router(system.router)
    app.include_router(graphql_router(), prefix="/graphql")
    # the operator's dashboard at / (static files; after the API routes)
    mount_dashboard(app, tile_url=settings.map_tile_url,
                    tile_attribution=settings.map_tile_attribution)
    if settings.mode == "replica":  # writes go to the leader
        app.add_middleware(ForwardToLeader)
    app.add_middleware(LatencyMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line carries request_id
    return app
