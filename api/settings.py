"""Settings of the live service, from ``ECOGRID_*`` environment variables or a file.

Every field below is one setting; its environment variable is ``ECOGRID_``
plus the upper-case name (``ECOGRID_MQTT_URL``, ``ECOGRID_DATABASE_URL``...).
A ``.env``-style file given with ``ecogrid serve --config FILE`` provides
defaults that the environment overrides.
docs/configuration.md lists them all.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OSM_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = ('&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> '
                   "contributors")


class Settings(BaseSettings):
    """Configuration of ``ecogrid serve`` / ``ecogrid demo`` (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="ECOGRID_", extra="ignore")

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker URL "
                          "(mqtt://[user:password@]host:port)")
    mqtt_credentials_dir: Path | None = Field(
        None, description="the folder `ecogrid mqtt credentials --out` wrote (passwd, acl, "
        "secrets.env); when set, the leader keeps it in line with the fleet: a site created "
        "through the API gets its gateway account and ACL, a deleted one loses them")
    mqtt_broker_pid_file: Path | None = Field(
        None, description="the broker's pid file (Mosquitto's pid_file): after the leader "
        "changed the credentials it sends SIGHUP, and Mosquitto re-reads passwd and acl")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the registry; default "
                                     "sqlite:///$ECOGRID_DATA_DIR/ecogrid.db")
    data_dir: Path = Field(Path("./data"), description="folder for the SQLite registry, the "
                           "zarr telemetry history and the generated JWT secret")
    jwt_secret: str | None = Field(None, description="HMAC secret of the tokens; default: "
                                   "generated once and kept in $ECOGRID_DATA_DIR/jwt_secret")
    access_token_ttl_s: float = Field(900.0, gt=0, description="access token lifetime [s]")
    refresh_token_ttl_s: float = Field(7 * 86400.0, gt=0, description="refresh token lifetime [s]")
    admin_user: str | None = Field(None, description="admin created at start when missing")
    admin_password: str | None = Field(None, description="that admin's password")
    log_level: str = Field("INFO", description="logging level")
    log_format: Literal["json", "text"] = Field("json", description="log lines on stderr: one "
                                                "JSON object per line, or plain text")
    login_attempts_per_minute: int = Field(10, ge=1, description="failed logins allowed per "
                                           "user name and client address per minute")
    fleet_file: Path | None = Field(None, description="fleet (.json/.parquet) loaded into an "
                                    "empty registry; default: the generated reference fleet")
    fleet_sites: int = Field(342, ge=1, description="sites of the generated fleet when the "
                             "registry is empty and no fleet_file is given")
    optimizer_interval_s: float = Field(900.0, gt=0, description="cadence of automatic plans [s]")
    optimizer_enabled: bool = Field(True, description="propose plans on the cadence")
    optimizer_process: bool = Field(True, description="compute plans in a separate worker "
                                    "process (keeps the API responsive during a solve); "
                                    "false: in the service's process")
    optimizer_nice: int = Field(10, ge=0, le=19, description="niceness added to the optimizer "
                                "worker process (POSIX): the service's own work gets the CPU "
                                "first while a plan is computed")
    plan_step_s: float = Field(900.0, gt=0, description="plan step [s]")
    plan_horizon_s: float = Field(86400.0, gt=0, description="plan horizon [s]")
    plan_ttl_s: float = Field(1800.0, gt=0, description="a proposed plan expires after [s]")
    dispatch_tick_s: float = Field(1.0, gt=0, description="how often due setpoints are sent [s]")
    command_ack_timeout_s: float = Field(30.0, gt=0, description="a command handed to the "
                                         "publisher without a final ack expires after [s]")
    history_flush_s: float = Field(10.0, gt=0, le=10.0, description="telemetry history "
                                   "snapshot period [s] (at most 10)")
    history_url: str | None = Field(None, description="the one telemetry store (a folder or "
                                    "file:// URL shared by the service and every ingest "
                                    "worker); default $ECOGRID_DATA_DIR/history")
    history_raw_days: float = Field(7.0, gt=0, description="how long raw telemetry "
                                    "snapshots are kept [days]; the 5-minute and hourly "
                                    "rollups are kept for years")
    ingest: Literal["embedded", "workers"] = Field(
        "embedded", description="embedded: the service subscribes to the device telemetry "
        "and writes the telemetry store itself; workers: `ecogrid ingest` workers do, and the "
        "service reads their newest values and history from the same store")
    fleet_poll_s: float = Field(1.0, gt=0, description="how often a process checks the "
                                "registry's fleet version and reloads the fleet when another "
                                "process changed it [s] (one primary-key read)")
    gc_sweep_s: float = Field(600.0, gt=0, description="how often the service's frozen heap "
                              "is collected in full [s] (one pause of ~0.3 s at the "
                              "reference fleet); see api/live/heap.py")
    ws_queue_size: int = Field(256, ge=8, description="messages queued per WebSocket client")
    ws_max_drops: int = Field(1024, ge=1, description="a client that lost this many messages "
                              "in a row is disconnected")
    telemetry_interval_s: float = Field(1.0, gt=0, description="expected device telemetry "
                                        "interval [s] (stale after three missed)")
    co2_kg_per_mwh: float | None = Field(None, ge=0, description="a constant grid carbon "
                                         "intensity for the plans and CO2 avoided [kg/MWh]; "
                                         "default: the day-ahead-like curve the planner uses")
    import_price_eur_per_mwh: float | None = Field(None, description="a constant price of "
                                                   "imported energy for the plans, the live "
                                                   "cost and the analytics [EUR/MWh]; default: "
                                                   "the planner's day-ahead-like curve")
    export_price_eur_per_mwh: float | None = Field(None, description="a constant price paid "
                                                   "for exported energy (plans, live revenue, "
                                                   "analytics) [EUR/MWh]; default: the "
                                                   "planner's feed-in curve")
    setpoint_valid_s: float = Field(900.0, gt=0, description="validity of manual setpoints [s]")
    alert_eval_s: float = Field(5.0, gt=0, description="period of the alert evaluation [s]")
    smtp_host: str | None = Field(None, description="SMTP server for alert e-mail; none: "
                                  "no e-mail")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port")
    smtp_from: str = Field("ecogrid@localhost", description="From address of alert e-mail")
    smtp_to: str = Field("", description="alert e-mail recipients, comma-separated")
    smtp_user: str | None = Field(None, description="SMTP login user (optional)")
    smtp_password: str | None = Field(None, description="SMTP login password (optional)")
    smtp_starttls: bool = Field(False, description="use STARTTLS on the SMTP connection")
    smtp_min_severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="lowest alert severity that is e-mailed")
    carbon_intensity_file: Path | None = Field(None, description="CSV (time,co2_kg_per_mwh) "
                                               "of grid carbon intensity for the plans and "
                                               "CO2 avoided; replaces co2_kg_per_mwh and the "
                                               "curve")
    report_dir: Path | None = Field(None, description="folder of scheduled reports; default "
                                    "$ECOGRID_DATA_DIR/reports")
    report_schedule: str = Field("", description="scheduled reports, comma-separated of "
                                 "daily, weekly, monthly; empty: none")
    mode: Literal["live", "offline", "replica"] = Field(
        "live", description="live: the leader (the single writer); offline: no broker "
        "connection (API and registry only); replica: a read replica of the API that "
        "forwards writes to ECOGRID_LEADER_URL (docs/operations.md#scale)")
    leader_url: str | None = Field(None, description="replica mode: base URL of the leader "
                                   "(e.g. http://ecogrid-leader:8000); required there")
    leader_timeout_s: float = Field(120.0, gt=0, description="replica mode: how long a "
                                    "request forwarded to the leader may take [s]")
    events_relay: bool = Field(False, description="leader: also publish every WebSocket "
                               "event (plans, commands, alerts, kpis) to the MQTT topics "
                               "ecogrid/events/{channel}, for the replicas")
    map_tile_url: str | None = Field(
        OSM_TILE_URL, description="the dashboard map's tile URL template "
        "(https://.../{z}/{x}/{y}.png; {s} for subdomains); 'none' or empty: no basemap, the "
        "sites on a plain background (offline sites). The default is OpenStreetMap's public "
        "tile server: fine for a demo, under its usage policy; run or rent a tile server for "
        "a production fleet")
    map_tile_attribution: str = Field(OSM_ATTRIBUTION, description="the attribution shown "
                                      "with the tiles (HTML; required by most tile providers)")

    @field_validator("map_tile_url")
    @classmethod
    def _tile_url(cls, v: str | None) -> str | None:
        if v is None or v.strip().lower() in ("", "none", "off"):
            return None
        if not v.startswith(("http://", "https://", "/")) or "{z}" not in v:
            raise ValueError(f"{v!r} is not a tile URL template: it must start with http://, "
                             "https:// or / and hold {z}, {x} and {y}")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"{v!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: object) -> object:
        if isinstance(data, dict):
            gone = [f"ECOGRID_{k.upper()}" for k in data if f"ECOGRID_{k.upper()}" in REMOVED]
            if gone:
                raise ValueError("; ".join(f"{g} was removed; use {REMOVED[g]}" for g in gone))
        return data

    @field_validator("history_url")
    @classmethod
    def _history_url(cls, v: str | None) -> str | None:
        if v and "://" in v and not v.startswith("file://"):
            raise ValueError(f"{v!r}: only a folder or a file:// URL is supported")
        return v

    @model_validator(mode="after")
    def _replica_needs(self) -> Settings:
        if self.mode != "replica":
            return self
        if not self.leader_url:
            raise ValueError("ECOGRID_LEADER_URL is required when ECOGRID_MODE=replica: the "
                             "base URL of the leader (e.g. http://ecogrid-leader:8000)")
        if not self.leader_url.startswith(("http://", "https://")):
            raise ValueError(f"ECOGRID_LEADER_URL {self.leader_url!r} must start with "
                             "http:// or https://")
        if not self.jwt_secret:
            raise ValueError("ECOGRID_JWT_SECRET is required when ECOGRID_MODE=replica: the "
                             "leader and its replicas must sign tokens with the same secret")
        return self

    def registry_url(self) -> str:
        """The registry's SQLAlchemy URL (the SQLite default under ``data_dir``)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ecogrid.db').resolve()}"

    def history_root(self) -> Path:
        """The telemetry store's folder (``history_url``, default ``data_dir/history``)."""
        if not self.history_url:
            return self.data_dir / "history"
        return Path(self.history_url.removeprefix("file://"))

    def secret(self) -> str:
        """The JWT secret: the setting, else one generated once and kept in ``data_dir``."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value)
        tmp.chmod(0o600)
        tmp.replace(path)
        return value


# Settings that were removed, with what replaces them (an old deployment gets told, not ignored).
REMOVED: dict[str, str] = {
    "ECOGRID_PRICE_EUR_PER_MWH": "ECOGRID_EXPORT_PRICE_EUR_PER_MWH (revenue is exported "
    "energy times the export price)",
}


def load_settings(config_file: str | Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment, a ``.env``-style file and explicit overrides.

    Raises
    ------
    ValueError
        Naming each bad setting and its environment variable.
    """
    named = set(os.environ) | {f"ECOGRID_{k.upper()}" for k in overrides}
    if config_file is not None and Path(config_file).is_file():
        named |= {line.split("=", 1)[0].strip().removeprefix("export ").strip()
                  for line in Path(config_file).read_text().splitlines() if "=" in line}
    gone = [f"{name} was removed; use {instead}" for name, instead in REMOVED.items()
            if name in named]
    if gone:
        raise ValueError("invalid settings: " + "; ".join(gone))
    try:
        return Settings(_env_file=config_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(f"ECOGRID_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             if e["loc"] else e["msg"] for e in exc.errors())
        raise ValueError(f"invalid settings: {problems}") from None
