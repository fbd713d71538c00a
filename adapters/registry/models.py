"""SQLAlchemy 2 table models of the registry.

Times are Unix seconds (float, UTC). Identifiers of sites and devices are the
fleet's string ids; plans and scenarios use random hex ids; commands,
alerts, users and audit entries use integer keys.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_s: Mapped[float] = mapped_column(Float)
    password_changed_s: Mapped[float] = mapped_column(Float)


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issued_s: Mapped[float] = mapped_column(Float)
    expires_s: Mapped[float] = mapped_column(Float)
    revoked_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class FeederRow(Base):
    __tablename__ = "feeders"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    import_limit_kw: Mapped[float | None] = mapped_column(Float, nullable=True)
    export_limit_kw: Mapped[float | None] = mapped_column(Float, nullable=True)


class SiteRow(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat_deg: Mapped[float] = mapped_column(Float)
    lon_deg: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    import_limit_kw: Mapped[float] = mapped_column(Float)
    export_limit_kw: Mapped[float] = mapped_column(Float)
    feeder_id: Mapped[str] = mapped_column(ForeignKey("feeders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)


class DeviceRow(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)


class FleetStateRow(Base):
    """One row: the fleet's version, raised by every change to sites, feeders or devices, so
    every process (the leader, replicas, ingest workers) sees that it must reload."""

    __tablename__ = "fleet_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    changed_s: Mapped[float] = mapped_column(Float)


class PlanRow(Base):
    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_s: Mapped[float] = mapped_column(Float, index=True)
    start_s: Mapped[float] = mapped_column(Float)
    step_s: Mapped[float] = mapped_column(Float)
    n_steps: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    initial_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    setpoints: Mapped[dict[str, Any]] = mapped_column(JSON)
    kpis: Mapped[dict[str, Any]] = mapped_column(JSON)
    solver_status: Mapped[str] = mapped_column(String(64))
    solver_time_s: Mapped[float] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class CommandRow(Base):
    """A setpoint command; the columns of ``adapters.mqtt.types.CommandRecord`` plus when
    and why it goes out (``due_s``, ``source``, ``plan_id``, ``created_by``)."""

    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("device_id", "version", name="uq_command_device_version"),
        Index("ix_commands_status_due", "status", "due_s"),
        Index("ix_commands_site_id_id", "site_id", "id"),  # a site's commands, newest first
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    command_id: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16))
    created_s: Mapped[float] = mapped_column(Float)
    due_s: Mapped[float] = mapped_column(Float)
    valid_until_s: Mapped[float] = mapped_column(Float)
    issued_at_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_sent_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acked_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    transitions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeviceVersionRow(Base):
    """The last command version handed out per device (versions only rise)."""

    __tablename__ = "device_versions"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_s: Mapped[float] = mapped_column(Float, index=True)
    severity: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acked_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class AlertRuleRow(Base):
    """A threshold rule admins manage (``/api/v1/alert-rules``); migration 0002."""

    __tablename__ = "alert_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    severity: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_s: Mapped[float] = mapped_column(Float)
    updated_s: Mapped[float] = mapped_column(Float)


class AlertStateRow(Base):
    """The life cycle of one alert of ``alerts``: dedup key, first/last seen, occurrences,
    flapping, cleared; migration 0002."""

    __tablename__ = "alert_states"
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_seen_s: Mapped[float] = mapped_column(Float)
    last_seen_s: Mapped[float] = mapped_column(Float)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    cleared_s: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    t_s: Mapped[float] = mapped_column(Float, index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ScenarioRow(Base):
    __tablename__ = "scenarios"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_s: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    spec: Mapped[str] = mapped_column(Text)
    kpis: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
