"""Request dependencies: the live runtime, one of its parts, and the authenticated user with
a role check.

The dependencies are ``async def``: they do no I/O (token checks are CPU work
on the token alone), so they run on the event loop instead of costing a
thread-pool hop each. Checked access tokens are kept in a small
:class:`TokenCache` (per app) until they expire, so a client that sends the
same token again is not decoded again.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, WebSocket
from fastapi.security import OAuth2PasswordBearer

from api.accounts import Accounts, AuthError, Principal
from api.live.runtime import Runtime

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


class TokenCache:
    """Principals of valid access tokens, by token text, until their expiry (LRU, bounded).

    Only tokens that :meth:`Accounts.authenticate` accepted are kept; a token
    is answered from the cache while ``now_s`` is before its ``exp`` claim and
    refused as expired afterwards, exactly as a fresh decode would.

    Parameters
    ----------
    max_size : int
        Tokens kept; the least recently used one goes first.
    """

    def __init__(self, max_size: int = 1024):
        self.max_size = max_size
        self._items: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def authenticate(self, accounts: Accounts, token: str, now_s: float) -> Principal:
        """The principal of ``token``; AuthError as from :meth:`Accounts.authenticate`."""
        hit = self._items.get(token)
        if hit is not None:
            user, exp_s = hit
            if exp_s > now_s:
                self._items.move_to_end(token)
                return user
            del self._items[token]
        user = accounts.authenticate(token, now_s)  # raises AuthError for a bad token
        exp_s = _expiry_s(token)
        if exp_s is not None:
            self._items[token] = (user, exp_s)
            if len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return user


def _expiry_s(token: str) -> float | None:
    """The ``exp`` claim of a token whose signature was checked already; None if unreadable."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None


async def runtime(request: Request) -> Runtime:
    """The app's live runtime (opened in the lifespan)."""
    return request.app.state.runtime


def part(name: str) -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """Dependency: the runtime's part ``name`` (503 naming it when this role runs none)."""

    async def get(request: Request) -> Any:
        return request.app.state.runtime.part(name)

    return get


def socket_runtime(ws: WebSocket) -> Runtime:
    """The runtime of a WebSocket connection."""
    return ws.app.state.runtime


Live = Annotated[Runtime, Depends(runtime)]


async def principal(request: Request,
                    token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    """The user of the request's bearer token (401 when missing, invalid or expired)."""
    if not token:
        raise AuthError("not authenticated: send 'Authorization: Bearer <access token>'")
    state = request.app.state
    rt: Runtime = state.runtime
    cache: TokenCache | None = getattr(state, "token_cache", None)
    if cache is None:
        cache = state.token_cache = TokenCache()
    return cache.authenticate(rt.accounts, token, rt.clock())


def require(role: str):  # type: ignore[no-untyped-def]
    """Dependency: the user, who must have ``role`` or above (403 otherwise)."""

    async def check(user: Annotated[Principal, Depends(principal)]) -> Principal:
        if not user.has(role):
            raise PermissionError(f"this needs the {role} role; you are {user.role}")
        return user

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
