"""User accounts: passwords (argon2), JWT access and refresh tokens, roles, login limits,
and the use cases on them (login, token refresh, sign-out, password changes, user management).

Access tokens are short-lived JWTs (HS256) carrying the user name and role;
refresh tokens are JWTs whose id (``jti``) is stored in the registry so they
can be revoked (sign-out, password change). :class:`Accounts` holds the
registry, the token secret and lifetimes and the login limiter; each method is
one use case called by a route handler or the CLI. Time comes in as ``now_s``.
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

from adapters.registry import Registry, RegistryError
from adapters.registry import audit as audit_repo
from adapters.registry import users as users_repo

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


class RateLimited(Exception):
    """Too many failed logins; ``retry_after_s`` says when to try again."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")


class Accounts:
    """Authentication and user management on the registry.

    Parameters
    ----------
    registry : Registry
        The open registry.
    secret : str
        HMAC secret of the tokens.
    access_ttl_s, refresh_ttl_s : float
        Token lifetimes [s].
    attempts_per_minute : int
        Failed logins allowed per user name and client address per minute.
    """

    def __init__(self, registry: Registry, secret: str, access_ttl_s: float = 900.0,
                 refresh_ttl_s: float = 7 * 86400.0, attempts_per_minute: int = 10):
        self.registry = registry
        self.secret = secret
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.limiter = LoginLimiter(attempts_per_minute)

    def _tokens(self, name: str, role: str, now_s: float) -> dict[str, Any]:
        access = make_access_token(self.secret, name, role, now_s, self.access_ttl_s)
        refresh, jti = make_refresh_token(self.secret, name, now_s, self.refresh_ttl_s)
        with self.registry.session() as s:
            users_repo.add_refresh_token(s, name, jti, now_s, now_s + self.refresh_ttl_s)
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                "expires_in": int(self.access_ttl_s), "role": role}

    def login(self, name: str, password: str, client: str, now_s: float) -> dict[str, Any]:
        """Check the password and return new tokens.

        Raises
        ------
        RateLimited
            After too many failed attempts for this name and client.
        AuthError
            For a wrong name or password (the message does not say which).
        """
        key = f"{name}|{client}"
        wait = self.limiter.retry_after_s(key, now_s)
        if wait > 0:
            raise RateLimited(wait)
        with self.registry.session() as s:
            user = users_repo.get_user(s, name)
        if user is None or not verify_password(user["password_hash"], password):
            self.limiter.failed(key, now_s)
            raise AuthError("wrong user name or password")
        self.limiter.succeeded(key)
        with self.registry.session() as s:
            audit_repo.record(s, now_s, name, "auth.login", f"user:{name}", {"client": client})
        return self._tokens(name, user["role"], now_s)

    def refresh(self, refresh_token: str, now_s: float) -> dict[str, Any]:
        """New tokens for a valid refresh token, which is used up (rotation)."""
        claims = decode_token(self.secret, refresh_token, "refresh", now_s)
        with self.registry.session() as s:
            if not users_repo.refresh_token_valid(s, claims["jti"], now_s):
                raise AuthError("refresh token revoked or unknown")
            users_repo.revoke_refresh_token(s, claims["jti"], now_s)
            user = users_repo.get_user(s, claims["sub"])
        if user is None:
            raise AuthError("user no longer exists")
        return self._tokens(user["name"], user["role"], now_s)

    def revoke(self, refresh_token: str, now_s: float) -> None:
        """Sign out: revoke one refresh token."""
        claims = decode_token(self.secret, refresh_token, "refresh", now_s)
        with self.registry.session() as s:
            users_repo.revoke_refresh_token(s, claims["jti"], now_s)
            audit_repo.record(s, now_s, claims["sub"], "auth.logout", f"user:{claims['sub']}")

    def authenticate(self, access_token: str, now_s: float) -> Principal:
        """The principal of a valid access token (AuthError otherwise)."""
        claims = decode_token(self.secret, access_token, "access", now_s)
        return Principal(name=claims["sub"], role=claims["role"])

    # -- user management -----------------------------------------------------------
    def create_user(self, name: str, password: str, role: str, now_s: float,
                    by: str = "cli") -> dict[str, Any]:
        check_password_strength(password)
        with self.registry.session() as s:
            rec = users_repo.create_user(s, name, hash_password(password), role, now_s)
            audit_repo.record(s, now_s, by, "user.create", f"user:{name}", {"role": role})
        return rec

    def change_password(self, name: str, old_password: str, new_password: str,
                        now_s: float) -> None:
        """A user changes their own password; all their refresh tokens are revoked."""
        with self.registry.session() as s:
            user = users_repo.get_user(s, name)
        if user is None or not verify_password(user["password_hash"], old_password):
            raise AuthError("current password is wrong")
        check_password_strength(new_password)
        with self.registry.session() as s:
            users_repo.set_password(s, name, hash_password(new_password), now_s)
            audit_repo.record(s, now_s, name, "user.password", f"user:{name}")

    def reset_password(self, name: str, new_password: str, by: str, now_s: float) -> None:
        """An admin sets anyone's password; that user's refresh tokens are revoked."""
        check_password_strength(new_password)
        with self.registry.session() as s:
            users_repo.set_password(s, name, hash_password(new_password), now_s)
            audit_repo.record(s, now_s, by, "user.reset_password", f"user:{name}")

    def set_role(self, name: str, role: str, by: str, now_s: float) -> dict[str, Any]:
        with self.registry.session() as s:
            rec = users_repo.set_role(s, name, role)
            audit_repo.record(s, now_s, by, "user.role", f"user:{name}", {"role": role})
        return rec

    def delete_user(self, name: str, by: str, now_s: float) -> None:
        if name == by:
            raise RegistryError("you cannot delete your own account")
        with self.registry.session() as s:
            users_repo.delete_user(s, name)
            audit_repo.record(s, now_s, by, "user.delete", f"user:{name}")

    def list_users(self) -> list[dict[str, Any]]:
        with self.registry.session() as s:
            return users_repo.list_users(s)

    def ensure_admin(self, name: str | None, password: str | None,
                     now_s: float) -> tuple[str, str] | None:
        """Make a first admin when the registry has none.

        Uses ``name``/``password`` when given, else ``admin`` and a generated
        password. Returns ``(name, password)`` when an admin was created, else None.
        """
        with self.registry.session() as s:
            # Another admin exists: add only a configured admin not yet known.
            configured_is_new = bool(name and password) and users_repo.get_user(s, name) is None
            if users_repo.count_users(s, "admin") > 0 and not configured_is_new:
                return None
        name = name or "admin"
        password = password or secrets.token_urlsafe(12)
        self.create_user(name, password, "admin", now_s, by="startup")
        return name, password
