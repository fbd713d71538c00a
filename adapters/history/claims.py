"""Writer claims of the telemetry history: which writer process owns which sites.

A claim is the file ``writers/{writer}.lock`` under the history root, holding
a JSON record (writer id, host, pid, ``exclusive`` or ``shared``, site ids,
start time). It is *live* while its writer holds an exclusive ``flock`` on it;
the lock goes with the process, so the claim of a process that died (killed,
crashed, its machine rebooted) is *stale* and is taken over silently.

Rules, checked under the root-wide lock ``writers/.claims.lock`` so that two
writers starting at once are ordered:

* two live writers never share a writer id (each owns its stores);
* a site is claimed exclusively by at most one live writer (a site partition
  worker, or the live service writing itself);
* an exclusive claim never overlaps a live shared claim (a member of an MQTT
  shared-subscription group, which may see any device of its sites); shared
  claims may overlap each other.

The locks are advisory ``fcntl.flock`` locks: they hold between processes on
one machine and, on Linux NFS clients, across machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapters.storage import StorageError

WRITER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GLOBAL = ".claims.lock"


class ClaimError(StorageError):
    """A writer that may not start: its id or its sites are held by a live writer."""


def check_writer_id(writer_id: str) -> str:
    """A writer id (letters, digits, ``.``, ``_``, ``-``; it names files); returns it."""
    if not isinstance(writer_id, str) or not WRITER_ID.fullmatch(writer_id) \
            or len(writer_id) > 128:
        raise ClaimError(f"writer id {writer_id!r} names the writer's files: use letters, "
                         "digits, '.', '_' and '-' only (at most 128, not starting with "
                         "'.', '_' or '-')")
    return writer_id


@dataclass(frozen=True)
class ClaimInfo:
    """A writer's claim as recorded in its lock file.

    Parameters
    ----------
    writer : str
        Writer id.
    host : str
        Host name of the writer process.
    pid : int
        Its process id.
    exclusive : bool
        Exclusive (a partition worker, the live service) or shared (a group member).
    sites : tuple of str
        The claimed site ids.
    started_s : float
        When the claim was taken [Unix s].
    live : bool
        Its writer still holds the lock.
    """

    writer: str
    host: str
    pid: int
    exclusive: bool
    sites: tuple[str, ...]
    started_s: float
    live: bool

    def describe(self) -> str:
        mode = "exclusive" if self.exclusive else "shared"
        return f"writer {self.writer!r} (host {self.host}, pid {self.pid}, {mode} claim)"


def _sites_text(sites: Iterable[str], most: int = 5) -> str:
    s = sorted(sites)
    more = f" and {len(s) - most} more" if len(s) > most else ""
    return ", ".join(s[:most]) + more


def _read(path: Path, live: bool) -> ClaimInfo | None:
    try:
        rec = json.loads(path.read_text() or "{}")
        return ClaimInfo(str(rec["writer"]), str(rec["host"]), int(rec["pid"]),
                         bool(rec["exclusive"]), tuple(rec["sites"]), float(rec["started_s"]),
                         live)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_live(path: Path) -> bool:
    """Whether a writer holds the lock on ``path`` (a probe: takes and drops a shared lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def read_claims(root: str | Path) -> list[ClaimInfo]:
    """Every writer's claim under ``root`` (live and stale), sorted by writer id.

    Takes the root-wide lock (shared) so that its probes never make a writer
    that is starting at that moment see its own stale claim as live.
    """
    try:
        g = os.open(Path(root) / "writers" / _GLOBAL, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        fcntl.flock(g, fcntl.LOCK_SH)
        return _read_all(Path(root))
    finally:
        os.close(g)


def _read_all(root: Path) -> list[ClaimInfo]:
    folder = root / "writers"
    out = []
    for path in sorted(folder.glob("*.lock")):
        if path.name == _GLOBAL:
            continue
        info = _read(path, _is_live(path))
        if info is not None:
            out.append(info)
    return out


def _conflicts(mine_exclusive: bool, sites: set[str], other: ClaimInfo) -> set[str]:
    if not (mine_exclusive or other.exclusive):
        return set()
    return sites & set(other.sites)


class WriterClaim:
    """The claim of one writer process (see the module docstring).

    Parameters
    ----------
    root : str or Path
        History root folder.
    writer_id : str
        The writer's id.
    sites : iterable of str
        Site ids it writes.
    exclusive : bool
        Exclusive claim (no other writer of these sites) or shared.
    """

    def __init__(self, root: str | Path, writer_id: str, sites: Iterable[str],
                 exclusive: bool = True):
        self.root = Path(root)
        self.writer_id = check_writer_id(writer_id)
        self.sites = tuple(dict.fromkeys(str(s) for s in sites))
        self.exclusive = bool(exclusive)
        self.path = self.root / "writers" / f"{self.writer_id}.lock"
        self._fd: int | None = None
        self.started_s = 0.0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _global(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent / _GLOBAL, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _check(self, sites: tuple[str, ...]) -> None:
        wanted = set(sites)
        for other in _read_all(self.root):
            if other.writer == self.writer_id or not other.live:
                continue  # ourselves, or a stale claim: taken over silently
            clash = _conflicts(self.exclusive, wanted, other)
            if clash:
                mode = "exclusively" if self.exclusive else "shared"
                raise ClaimError(
                    f"history writer {self.writer_id!r} cannot claim site(s) "
                    f"{_sites_text(clash)} {mode}: {other.describe()} holds them; stop that "
                    "writer or give this one other sites")

    def _write(self, started_s: float) -> None:
        assert self._fd is not None
        rec = {"writer": self.writer_id, "host": socket.gethostname(), "pid": os.getpid(),
               "exclusive": self.exclusive, "sites": list(self.sites), "started_s": started_s}
        data = json.dumps(rec).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def acquire(self, now_s: float) -> WriterClaim:
        """Take the claim (``now_s`` [Unix s] is recorded); raises :class:`ClaimError`."""
        if self._fd is not None:
            return self
        g = self._global()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                other = _read(self.path, True)
                who = other.describe() if other else f"writer {self.writer_id!r}"
                sites = f" (sites {_sites_text(other.sites)})" if other and other.sites else ""
                raise ClaimError(f"history writer id {self.writer_id!r} is in use by a live "
                                 f"{who}{sites}: each writer needs its own id") from None
            try:
                self._check(self.sites)
            except ClaimError:
                os.close(fd)
                raise
            self._fd = fd
            self.started_s = float(now_s)
            self._write(self.started_s)
        finally:
            os.close(g)
        return self

    def update(self, sites: Iterable[str]) -> None:
        """Claim another set of sites (after a fleet change); raises :class:`ClaimError`."""
        sites = tuple(dict.fromkeys(str(s) for s in sites))
        if self._fd is None:
            self.sites = sites
            return
        g = self._global()
        try:
            self._check(sites)
            self.sites = sites
            self._write(self.started_s)
        finally:
            os.close(g)

    def release(self) -> None:
        """Give the claim up (its file is removed)."""
        if self._fd is None:
            return
        g = self._global()
        try:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
        finally:
            os.close(g)
