"""Request dependencies: the live service and the authenticated user with a role check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.auth import AuthError, Principal
from api.service import LiveService

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def service(request: Request) -> LiveService:
    """The app's live service (made in the lifespan)."""
    return request.app.state.service


Service = Annotated[LiveService, Depends(service)]


def principal(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    if not token:
        raise AuthError("not authenticated: send 'Authorization: Bearer <access token>'")
    svc: LiveService = request.app.state.service
    return svc.accounts.authenticate(token, svc.clock())


def require(role: str):  # type: ignore[no-untyped-def]
    """Dependency: the user, who must have ``role`` or above (403 otherwise)."""

    def check(user: Annotated[Principal, Depends(principal)]) -> Principal:
        if not user.has(role):
            raise PermissionError(f"this needs the {role} role; you are {user.role}")
        return user

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
