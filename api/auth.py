"""Passwords (argon2), JWT access and refresh tokens, roles and login rate limits.

Access tokens are short-lived JWTs (HS256) carrying the user name and role;
refresh tokens are JWTs whose id (``jti``) is stored in the registry so they
can be revoked (sign-out, password change). Time comes in as ``now_s``.
"""

from __future__ import annotations

import collections
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
_ALGORITHM = "HS256"


class AuthError(Exception):
    """A token or a login that is refused (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated user of a request."""

    name: str
    role: str

    def has(self, role: str) -> bool:
        """True when this user's role is ``role`` or above (viewer < operator < admin)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str) -> None:
    """Refuse passwords shorter than 8 characters (ValueError)."""
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")


def make_access_token(secret: str, name: str, role: str, now_s: float, ttl_s: float) -> str:
    claims = {"sub": name, "role": role, "typ": "access", "iat": int(now_s),
              "exp": int(now_s + ttl_s)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def make_refresh_token(secret: str, name: str, now_s: float, ttl_s: float) -> tuple[str, str]:
    """A refresh token and its id (``jti``), to be stored in the registry."""
    jti = secrets.token_hex(16)
    claims = {"sub": name, "typ": "refresh", "jti": jti, "iat": int(now_s),
              "exp": int(now_s + ttl_s)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), jti


def decode_token(secret: str, token: str, kind: str, now_s: float) -> dict[str, Any]:
    """Check signature, expiry (against ``now_s``) and type; returns the claims.

    Raises
    ------
    AuthError
        For a tampered, malformed, expired or wrong-type token.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM],
                            options={"verify_exp": False, "require": ["sub", "exp", "typ"]})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    if claims.get("typ") != kind:
        raise AuthError(f"expected a {kind} token")
    if float(claims["exp"]) <= now_s:
        raise AuthError("token expired")
    if kind == "access" and claims.get("role") not in ROLE_RANK:
        raise AuthError("token has no valid role")
    return claims


class LoginLimiter:
    """Failed-login counter per key (user name and client address) over a sliding minute.

    Parameters
    ----------
    per_minute : int
        Failed attempts allowed in any 60 s window before further attempts are refused.
    """

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._fails: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, key: str, now_s: float) -> float:
        """0 when an attempt is allowed now, else the seconds to wait."""
        with self._lock:
            q = self._fails.get(key)
            if not q:
                return 0.0
            while q and q[0] <= now_s - 60.0:
                q.popleft()
            if len(q) < self.per_minute:
                return 0.0
            return max(0.0, q[0] + 60.0 - now_s)

    def failed(self, key: str, now_s: float) -> None:
        with self._lock:
            self._fails.setdefault(key, collections.deque()).append(now_s)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)
