"""Every error as JSON ``{"error": message, "status": code}``; never a stack trace.

Domain errors map to HTTP codes here, so handlers need no try/except:
unknown records 404, bad input 400/422, state conflicts 409, auth 401/403,
rate limits 429, missing parts of the service 503.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.history import HistoryError, UnknownDeviceError
from adapters.registry import RegistryError
from adapters.registry.commands import CommandStateError
from adapters.registry.plans import PlanStateError
from adapters.storage import StorageError
from api.accounts import AuthError, RateLimited
from api.analytics.market import MarketError
from api.live.approvals import SetpointError
from api.live.types import ServiceUnavailable
from twin.fleet import FleetError

log = logging.getLogger(__name__)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, _validation_message(exc))

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        return error(401, str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PermissionError)
    async def _forbidden(request: Request, exc: PermissionError) -> JSONResponse:
        return error(403, str(exc))

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> JSONResponse:
        return error(429, str(exc), {"Retry-After": str(int(exc.retry_after_s) + 1)})

    @app.exception_handler(RegistryError)
    async def _registry(request: Request, exc: RegistryError) -> JSONResponse:
        if isinstance(exc, PlanStateError | CommandStateError):
            return error(409, str(exc))
        message = str(exc)
        return error(404 if message.startswith("no ") else 400, message)

    @app.exception_handler(SetpointError)
    async def _setpoint(request: Request, exc: SetpointError) -> JSONResponse:
        return error(404 if str(exc).startswith("no device") else 400, str(exc))

    @app.exception_handler(FleetError)
    async def _fleet(request: Request, exc: FleetError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(UnknownDeviceError)
    async def _unknown_device(request: Request, exc: UnknownDeviceError) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(HistoryError)
    @app.exception_handler(StorageError)
    @app.exception_handler(MarketError)
    async def _history(request: Request, exc: ValueError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else "constraint"
        return error(409, f"conflicts with the stored data: {first}")

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error(500, "internal error; the service log has the details")
