"""``/auth/*`` (tokens, sign-out, own password) and ``/users`` (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.http.deps import Admin, Service, Viewer
from api.http.schemas import PasswordChangeIn, RefreshIn, UserIn, UserPatch

router = APIRouter(tags=["auth"])


@router.post("/auth/token", summary="Log in (OAuth2 password form): access + refresh token")
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request,
          svc: Service) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    return svc.accounts.login(form.username, form.password, client, svc.clock())


@router.post("/auth/refresh", summary="New tokens for a refresh token (which is used up)")
def refresh(body: RefreshIn, svc: Service) -> dict[str, Any]:
    return svc.accounts.refresh(body.refresh_token, svc.clock())


@router.post("/auth/logout", summary="Revoke a refresh token (sign out)")
def logout(body: RefreshIn, svc: Service) -> dict[str, Any]:
    svc.accounts.revoke(body.refresh_token, svc.clock())
    return {"revoked": True}


@router.get("/auth/me", summary="The signed-in user")
def me(user: Viewer) -> dict[str, Any]:
    return {"name": user.name, "role": user.role}


@router.post("/auth/password", summary="Change your own password (revokes your refresh tokens)")
def change_password(body: PasswordChangeIn, user: Viewer, svc: Service) -> dict[str, Any]:
    svc.accounts.change_password(user.name, body.old_password, body.new_password, svc.clock())
    return {"changed": True}


@router.get("/users", summary="List users (admin)")
def list_users(user: Admin, svc: Service) -> list[dict[str, Any]]:
    return svc.accounts.list_users()


@router.post("/users", status_code=201, summary="Create a user (admin)")
def create_user(body: UserIn, user: Admin, svc: Service) -> dict[str, Any]:
    return svc.accounts.create_user(body.name, body.password, body.role, svc.clock(),
                                    by=user.name)


@router.patch("/users/{name}", summary="Change a user's role or reset the password (admin)")
def update_user(name: str, body: UserPatch, user: Admin, svc: Service) -> dict[str, Any]:
    if body.password is not None:
        svc.accounts.reset_password(name, body.password, user.name, svc.clock())
    if body.role is not None:
        return svc.accounts.set_role(name, body.role, user.name, svc.clock())
    return {"name": name, "updated": True}


@router.delete("/users/{name}", summary="Delete a user (admin)")
def delete_user(name: str, user: Admin, svc: Service) -> dict[str, Any]:
    svc.accounts.delete_user(name, user.name, svc.clock())
    return {"deleted": name}
