"""Request bodies of the REST and WebSocket API (pydantic models at the boundary)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RefreshIn(Strict):
    refresh_token: str


class PasswordChangeIn(Strict):
    old_password: str
    new_password: str = Field(min_length=8)


class UserIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8)
    role: Literal["viewer", "operator", "admin"]


class UserPatch(Strict):
    role: Literal["viewer", "operator", "admin"] | None = None
    password: str | None = Field(None, min_length=8)


class SiteIn(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[^/+#]+$")
    name: str | None = None
    lat_deg: float
    lon_deg: float
    timezone: str = "UTC"
    import_limit_kw: float
    export_limit_kw: float
    feeder_id: str | None = None
    status: Literal["active", "inactive", "maintenance"] = "active"
    tags: list[str] = []


class SitePatch(Strict):
    name: str | None = None
    lat_deg: float | None = None
    lon_deg: float | None = None
    timezone: str | None = None
    import_limit_kw: float | None = None
    export_limit_kw: float | None = None
    feeder_id: str | None = None
    status: Literal["active", "inactive", "maintenance"] | None = None
    tags: list[str] | None = None


class DeviceIn(BaseModel):
    """A device: ``id``, ``site_id``, ``type`` and the type's parameters (see the fleet docs)."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[^/+#]+$")
    site_id: str
    type: Literal["pv", "battery", "ev_charger", "load"]
    status: Literal["active", "inactive", "maintenance", "offline"] = "active"
    tags: list[str] = []


class SetpointIn(Strict):
    """A manual setpoint [kW]: now, at ``at_s``, or a series (``at_s`` list + ``values_kw``).

    Battery: ``p_kw`` (positive = discharge); PV and EV chargers: a power limit.
    """

    value_kw: float | None = None
    at_s: float | list[float] | None = None
    values_kw: list[float] | None = None


class GroupSetpointIn(Strict):
    """The same setpoint [kW] to a group of devices (all given selectors must match)."""

    site_id: str | None = None
    feeder_id: str | None = None
    type: Literal["pv", "battery", "ev_charger"] | None = None
    tag: str | None = None
    value_kw: float
    at_s: float | None = None


class RejectIn(Strict):
    reason: str | None = Field(None, max_length=1000)


def drop_none(model: BaseModel) -> dict[str, Any]:
    return {k: v for k, v in model.model_dump().items() if v is not None}
