"""``/auth/*`` (tokens, sign-out, own password) and ``/users`` (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.http.deps import Admin, Live, Viewer
from api.http.schemas import PasswordChangeIn, RefreshIn, UserIn, UserPatch

router = APIRouter(tags=["auth"])


@router.post("/auth/token", summary="Log in (OAuth2 password form): access + refresh token")
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request,
          rt: Live) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    return rt.accounts.login(form.username, form.password, client, rt.clock())


@router.post("/auth/refresh", summary="New tokens for a refresh token (which is used up)")
def refresh(body: RefreshIn, rt: Live) -> dict[str, Any]:
    return rt.accounts.refresh(body.refresh_token, rt.clock())


@router.post("/auth/logout", summary="Revoke a refresh token (sign out)")
def logout(body: RefreshIn, rt: Live) -> dict[str, Any]:
    rt.accounts.revoke(body.refresh_token, rt.clock())
    return {"revoked": True}


@router.get("/auth/me", summary="The signed-in user")
def me(user: Viewer) -> dict[str, Any]:
    return {"name": user.name, "role": user.role}


@router.post("/auth/password", summary="Change your own password (revokes your refresh tokens)")
def change_password(body: PasswordChangeIn, user: Viewer, rt: Live) -> dict[str, Any]:
    rt.accounts.change_password(user.name, body.old_password, body.new_password, rt.clock())
    return {"changed": True}


@router.get("/users", summary="List users (admin)")
def list_users(user: Admin, rt: Live) -> list[dict[str, Any]]:
    return rt.accounts.list_users()


@router.post("/users", status_code=201, summary="Create a user (admin)")
def create_user(body: UserIn, user: Admin, rt: Live) -> dict[str, Any]:
    return rt.accounts.create_user(body.name, body.password, body.role, rt.clock(),
                                    by=user.name)


@router.patch("/users/{name}", summary="Change a user's role or reset the password (admin)")
def update_user(name: str, body: UserPatch, user: Admin, rt: Live) -> dict[str, Any]:
    if body.password is not None:
        rt.accounts.reset_password(name, body.password, user.name, rt.clock())
    if body.role is not None:
        return rt.accounts.set_role(name, body.role, user.name, rt.clock())
    return {"name": name, "updated": True}


@router.delete("/users/{name}", summary="Delete a user (admin)")
def delete_user(name: str, user: Admin, rt: Live) -> dict[str, Any]:
    rt.accounts.delete_user(name, user.name, rt.clock())
    return {"deleted": name}
