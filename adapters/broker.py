"""A private Mosquitto broker: config written to a directory, started on a free port.

Tests, ``ecogrid demo`` and the benchmarks all start their own broker through
:class:`Broker` instead of relying on a system one. The broker keeps its
persistence file in its directory, so :meth:`Broker.restart` brings it back on
the same port with the sessions and queued QoS 1 messages it had.

    with Broker() as broker:
        url = broker.url          # "mqtt://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


class BrokerError(RuntimeError):
    """The Mosquitto broker could not be found, configured or started."""


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` binary; raises :class:`BrokerError` when missing."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise BrokerError("the mosquitto binary was not found; install it "
                      "(Debian/Ubuntu: sudo apt-get install mosquitto) or run ./bootstrap setup")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_config(port: int, data_dir: Path, *, host: str = "127.0.0.1",
                  password_file: Path | None = None, acl_file: Path | None = None,
                  persistence: bool = True, extra: tuple[str, ...] = ()) -> str:
    """Text of a mosquitto.conf for a private broker.

    Without a password file the listener allows anonymous clients; with one,
    only the listed users connect, and ``acl_file`` limits their topics.
    Queues are unbounded so that persistent sessions lose nothing while a
    client is away (the benchmarks and tests count every message).
    """
    lines = [
        # Started as root, mosquitto would switch to the 'mosquitto' user and could not
        # write its persistence file into our directory: stay the user we are.
        f"user {getpass.getuser()}",
        "per_listener_settings false",
        f"listener {port} {host}",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        "max_packet_size 1048576",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
        "set_tcp_nodelay true",
        "persistent_client_expiration 1d",  # MQTT 3.1.1 sessions (v5 clients set their own)
    ]
    if persistence:
        lines += ["persistence true", f"persistence_location {data_dir}/",
                  "persistence_file mosquitto.db", "autosave_interval 3600"]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines += ["allow_anonymous true"]
    if acl_file is not None:
        lines += [f"acl_file {acl_file}"]
    lines += list(extra)
    return "\n".join(lines) + "\n"


class Broker:
    """A Mosquitto process of our own.

    Parameters
    ----------
    directory : path, optional
        Where the config, the log and the persistence file go; a temporary
        directory (removed on :meth:`stop`) when omitted.
    port : int, optional
        TCP port; a free one when omitted. It stays the same across restarts.
    password_file, acl_file : path, optional
        Mosquitto password file and ACL (see :mod:`adapters.credentials`).
    persistence : bool
        Keep sessions and queued messages across :meth:`restart`.
    """

    def __init__(self, directory: str | Path | None = None, *, port: int | None = None,
                 host: str = "127.0.0.1", password_file: str | Path | None = None,
                 acl_file: str | Path | None = None, persistence: bool = True,
                 extra_config: tuple[str, ...] = ()):
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="ecogrid-mosquitto-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.password_file = Path(password_file) if password_file else None
        self.acl_file = Path(acl_file) if acl_file else None
        self.persistence = persistence
        self.extra_config = tuple(extra_config)
        self.binary = find_mosquitto()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the listener."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        """The running Mosquitto's process id (None when stopped)."""
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> Broker:
        """Write the config, start Mosquitto and wait until it accepts connections."""
        if self.running:
            return self
        self.config_path.write_text(broker_config(
            self.port, self.directory, host=self.host, password_file=self.password_file,
            acl_file=self.acl_file, persistence=self.persistence, extra=self.extra_config))
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self._close_log()
                self._proc = None
                raise BrokerError(f"mosquitto exited at start (port {self.port}): {tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    log.info("mosquitto pid %d listening on %s", self._proc.pid, self.url)
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0, remove: bool = True) -> None:
        """Stop Mosquitto (SIGTERM, so it saves its persistence file).

        ``remove`` deletes a temporary directory made by this object.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()
        if remove and self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop and start again on the same port, keeping the persistence file."""
        self.stop(remove=False)
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
