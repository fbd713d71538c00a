"""Users and refresh tokens in the registry.

Passwords arrive here already hashed (``api.accounts`` hashes with argon2); a
refresh token is stored by its id (``jti``) so it can be revoked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapters.registry.db import RegistryError
from adapters.registry.models import RefreshTokenRow, UserRow

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")


def _record(u: UserRow) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "role": u.role, "created_s": u.created_s,
            "password_changed_s": u.password_changed_s}


def create_user(s: Session, name: str, password_hash: str, role: str, t_s: float) -> dict[str, Any]:
    """Add a user; refuses an unknown role or a name that is taken."""
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is not one of {ROLES}")
    if not name or len(name) > 64:
        raise RegistryError("user name must be 1 to 64 characters")
    if s.scalar(select(UserRow).where(UserRow.name == name)) is not None:
        raise RegistryError(f"user {name!r} already exists")
    u = UserRow(name=name, password_hash=password_hash, role=role, created_s=t_s,
             password_changed_s=t_s)
    s.add(u)
    s.flush()
    return _record(u)


def get_user(s: Session, name: str) -> dict[str, Any] | None:
    """The user's record with ``password_hash``, or None."""
    u = s.scalar(select(UserRow).where(UserRow.name == name))
    if u is None:
        return None
    return {**_record(u), "password_hash": u.password_hash}


def list_users(s: Session) -> list[dict[str, Any]]:
    return [_record(u) for u in s.scalars(select(UserRow).order_by(UserRow.id))]


def count_users(s: Session, role: str | None = None) -> int:
    q = select(UserRow)
    if role is not None:
        q = q.where(UserRow.role == role)
    return len(s.scalars(q).all())


def set_password(s: Session, name: str, password_hash: str, t_s: float) -> None:
    """Store a new password hash and revoke all of the user's refresh tokens."""
    u = s.scalar(select(UserRow).where(UserRow.name == name))
    if u is None:
        raise RegistryError(f"no user {name!r}")
    u.password_hash = password_hash
    u.password_changed_s = t_s
    s.execute(update(RefreshTokenRow).where(RefreshTokenRow.user_id == u.id,
                                         RefreshTokenRow.revoked_s.is_(None)).values(revoked_s=t_s))


def set_role(s: Session, name: str, role: str) -> dict[str, Any]:
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is not one of {ROLES}")
    u = s.scalar(select(UserRow).where(UserRow.name == name))
    if u is None:
        raise RegistryError(f"no user {name!r}")
    u.role = role
    return _record(u)


def delete_user(s: Session, name: str) -> None:
    u = s.scalar(select(UserRow).where(UserRow.name == name))
    if u is None:
        raise RegistryError(f"no user {name!r}")
    s.execute(RefreshTokenRow.__table__.delete().where(RefreshTokenRow.user_id == u.id))
    s.delete(u)


def add_refresh_token(s: Session, name: str, jti: str, issued_s: float, expires_s: float) -> None:
    u = s.scalar(select(UserRow).where(UserRow.name == name))
    if u is None:
        raise RegistryError(f"no user {name!r}")
    s.add(RefreshTokenRow(jti=jti, user_id=u.id, issued_s=issued_s, expires_s=expires_s))


def refresh_token_valid(s: Session, jti: str, t_s: float) -> bool:
    """True when the token exists, is not revoked and has not expired at ``t_s``."""
    tok = s.get(RefreshTokenRow, jti)
    return tok is not None and tok.revoked_s is None and tok.expires_s > t_s


def revoke_refresh_token(s: Session, jti: str, t_s: float) -> bool:
    tok = s.get(RefreshTokenRow, jti)
    if tok is None or tok.revoked_s is not None:
        return False
    tok.revoked_s = t_s
    return True
