"""Broker credentials: a Mosquitto password file and ACL for a fleet.

Each site gateway gets its own user (``gw-{site}``) that may publish only
under ``sites/{site}/`` (telemetry, status, acknowledgements) and read only its
own devices' setpoint topics; the EcoGrid service account reads all telemetry,
status and acknowledgements, writes all setpoints, and publishes and reads the
leader's relayed events (``ecogrid/events/#``, read by the API replicas). Passwords are hashed in
Mosquitto 2's PBKDF2-SHA512 format (``$7$iterations$salt$hash``, the format
``mosquitto_passwd`` writes), so no external tool is needed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapters.mqtt.topics import gateway_acl_lines, service_acl_lines

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default
SERVICE_USER = "ecogrid"


GATEWAY_PREFIX = "gw-"


def gateway_user(site_id: str) -> str:
    """MQTT user name of a site's gateway."""
    return f"{GATEWAY_PREFIX}{site_id}"


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """Hash ``password`` as Mosquitto 2 does (PBKDF2-HMAC-SHA512, 12-byte salt)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def gateway_acl(site_id: str) -> list[str]:
    """ACL lines of one gateway: write its site's topics, read its setpoints."""
    return [f"user {gateway_user(site_id)}", *gateway_acl_lines(site_id)]


def service_acl(user: str = SERVICE_USER) -> list[str]:
    """ACL lines of the EcoGrid service account (the leader also relays its WebSocket
    events to the API replicas on ``ecogrid/events/#``)."""
    return [f"user {user}", *service_acl_lines()]


@dataclass(frozen=True)
class Credentials:
    """Where the files went and the plain passwords (to hand to gateways)."""

    password_file: Path
    acl_file: Path
    secrets_file: Path
    passwords: dict[str, str]


def write_credentials(site_ids: Iterable[str], directory: str | Path, *,
                      service_user: str = SERVICE_USER,
                      service_password: str | None = None) -> Credentials:
    """Write ``passwd``, ``acl`` and ``secrets.env`` (user=password, mode 0600) into ``directory``.

    Parameters
    ----------
    site_ids : iterable of str
        Sites whose gateways get an account.
    directory : path
        Created when missing.
    service_user, service_password : str
        The EcoGrid service account; a random password when omitted.
    """
    site_ids = _checked(site_ids)
    passwords = {service_user: service_password or secrets.token_urlsafe(24)}
    for s in site_ids:
        passwords[gateway_user(s)] = secrets.token_urlsafe(18)
    return _write_all(Path(directory), site_ids, passwords, service_user)


def sync_credentials(site_ids: Iterable[str], directory: str | Path, *,
                     service_user: str = SERVICE_USER) -> tuple[list[str], list[str]]:
    """Bring the files of :func:`write_credentials` in ``directory`` in line with the sites
    of a changed fleet: a new site's gateway gets an account (a new password in
    ``secrets.env``) and its ACL lines, a deleted site's gateway loses them; every other
    password stays. Returns the gateway users added and removed (both empty: nothing
    was written).

    Raises
    ------
    FileNotFoundError
        When ``directory`` holds no ``secrets.env`` (run ``ecogrid mqtt credentials``).
    """
    out = Path(directory)
    site_ids = _checked(site_ids)
    if not (out / "secrets.env").is_file():
        raise FileNotFoundError(f"{out} holds no secrets.env: write it first with "
                                f"`ecogrid mqtt credentials --out {out}`")
    old = read_secrets(out / "secrets.env")
    want = {gateway_user(s) for s in site_ids}
    gateways = {u for u in old if u.startswith(GATEWAY_PREFIX)}
    added, removed = sorted(want - gateways), sorted(gateways - want)
    if not added and not removed:
        return [], []
    passwords = {u: p for u, p in old.items() if u not in removed}
    for u in added:
        passwords[u] = secrets.token_urlsafe(18)
    _write_all(out, site_ids, passwords, service_user)
    return added, removed


def reload_broker(pid_file: str | Path) -> int:
    """Ask the Mosquitto whose pid is in ``pid_file`` to re-read its password file and ACL
    (SIGHUP); returns the pid. Raises ``OSError`` when there is no such process."""
    pid = int(Path(pid_file).read_text().split()[0])
    os.kill(pid, signal.SIGHUP)
    return pid


def _checked(site_ids: Iterable[str]) -> list[str]:
    site_ids = list(site_ids)
    for s in site_ids:
        if not s or any(ch in s for ch in "/+#: \n"):
            raise ValueError(f"site id {s!r} cannot be used in MQTT topics and user names")
    return site_ids


def _write_all(out: Path, site_ids: list[str], passwords: dict[str, str],
               service_user: str) -> Credentials:
    out.mkdir(parents=True, exist_ok=True)
    passwd = out / "passwd"
    acl = out / "acl"
    secrets_file = out / "secrets.env"
    _write_private(passwd, "".join(f"{u}:{hash_password(p)}\n" for u, p in passwords.items()))
    lines = ["# EcoGrid broker ACL: generated by `ecogrid mqtt credentials`", ""]
    lines += [*service_acl(service_user), ""]
    for s in site_ids:
        lines += [*gateway_acl(s), ""]
    _write_private(acl, "\n".join(lines))
    _write_private(secrets_file, "".join(f"{u}={p}\n" for u, p in passwords.items()))
    return Credentials(passwd, acl, secrets_file, passwords)


def read_secrets(path: str | Path) -> dict[str, str]:
    """Read ``user=password`` lines written by :func:`write_credentials`."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            user, _, pw = line.partition("=")
            out[user.strip()] = pw.strip()
    return out


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, replacing ``path`` in one step (a broker
    re-reading the file never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
