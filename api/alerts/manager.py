"""The alert manager: durations, dedup, flapping damping, persistence, push and email.

Each evaluation hands the manager the conditions that are true now
(:class:`Condition`, one per key such as ``pv_shortfall:device:D1``). A
condition opens an alert once it has held for its ``delay_s``; while it
persists, the same alert is updated (``last_seen_s``), never duplicated; it
clears once it has been false for ``clear_after_s``. A condition that comes
back within ``reopen_within_s`` of clearing reopens the same alert (one alert,
``occurrences`` counting); after ``flap_count`` reopenings within
``flap_window_s`` the alert is marked flapping and clears only after
``flap_hold_s`` of quiet. One-off events (a command rejected, an optimizer
fallback) use :meth:`AlertManager.event` and clear with
:meth:`AlertManager.resolve`.

Opened, reopened and cleared alerts are stored in the registry, announced
through ``notify("alerts", message)`` and, with an :class:`EmailNotifier`,
mailed. Time is always an argument.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.registry import Registry
from adapters.registry import alerts as alert_repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    """A condition that is true now.

    Parameters
    ----------
    key : str
        Identity of the condition (dedup key), e.g. ``"stale:device:D1"``.
    kind : str
        Alert kind (``device_offline``, ``stale``, ``threshold``, ...).
    severity : str
        ``info``, ``warning`` or ``critical``.
    message : str
        What is wrong, for people.
    site_id, device_id : str, optional
        Where.
    rule_id : int, optional
        The threshold rule behind it.
    delay_s : float
        How long it must hold before an alert opens [s].
    """

    key: str
    kind: str
    severity: str
    message: str
    site_id: str | None = None
    device_id: str | None = None
    rule_id: int | None = None
    delay_s: float = 0.0


@dataclass
class _Track:
    since_s: float  # condition true since
    kind: str | None = None
    alert_id: int | None = None
    open: bool = False
    false_since_s: float | None = None
    cleared_s: float | None = None
    reopen_times: list[float] = field(default_factory=list)
    flapping: bool = False


class AlertManager:
    """Turns conditions into alerts.

    Parameters
    ----------
    registry : Registry
        Where alerts and their life cycles are stored.
    notify : callable, optional
        ``notify(channel, message)``, e.g. the service's WebSocket push.
    email : EmailNotifier, optional
        Mails opened alerts (at or above its minimum severity).
    clear_after_s : float
        A condition must be false this long before its alert clears [s].
    reopen_within_s : float
        A condition back within this time after clearing reopens the alert [s].
    flap_count, flap_window_s, flap_hold_s : int, float, float
        Flapping damping: reopenings in the window that mark an alert
        flapping, and the quiet time a flapping alert needs to clear [s].
    clear_after_by_kind : dict, optional
        ``clear_after_s`` of particular alert kinds [s] (e.g. ``{"gateway_offline": 0}``:
        the gateway's retained ``online`` clears it at once).
    """

    def __init__(self, registry: Registry, notify: Callable[[str, dict[str, Any]], None]
                 | None = None, email: Any = None, *, clear_after_s: float = 60.0,
                 reopen_within_s: float = 900.0, flap_count: int = 3,
                 flap_window_s: float = 3600.0, flap_hold_s: float = 900.0,
                 clear_after_by_kind: dict[str, float] | None = None):
        self.registry = registry
        self.notify = notify
        self.email = email
        self.clear_after_s = float(clear_after_s)
        self.reopen_within_s = float(reopen_within_s)
        self.flap_count = int(flap_count)
        self.flap_window_s = float(flap_window_s)
        self.flap_hold_s = float(flap_hold_s)
        self._tracks: dict[str, _Track] = {}
        self._events: dict[str, Condition] = {}
        self.clear_after_by_kind = dict(clear_after_by_kind or {})
        self._lock = threading.Lock()
        # one evaluation at a time (event threads, the loop)
        self.pass_lock = threading.RLock()
        self.opened = 0

    def load_open(self) -> int:
        """Adopt the open alerts stored in the registry (after a restart); returns how many.

        Keys the manager already tracks are kept as they are (a second call changes nothing).
        """
        with self.registry.session() as s:
            recs = alert_repo.open_alerts(s)
        with self._lock:
            for r in recs:
                if r["key"] and r["key"] not in self._tracks:
                    self._tracks[r["key"]] = _Track(since_s=r["first_seen_s"], kind=r["kind"],
                                                    alert_id=r["id"], open=True,
                                                    flapping=r["flapping"])
        return len(recs)

    # -- events ------------------------------------------------------------------
    def event(self, t_s: float, cond: Condition) -> None:
        """A one-off condition (command rejected, fallback plan): open or update its alert
        now; it stays open until :meth:`resolve`."""
        with self._lock:
            self._events[cond.key] = cond
        self.evaluate(t_s, [], only=[cond.key])

    def resolve(self, t_s: float, key: str) -> None:
        """End a one-off condition; its alert clears at once."""
        with self.pass_lock:
            with self._lock:
                had = self._events.pop(key, None)
                tr = self._tracks.get(key)
            if had is None or tr is None or not tr.open:
                return
            with self.registry.session() as s:
                rec = alert_repo.clear_alert(s, tr.alert_id, t_s)  # type: ignore[arg-type]
            tr.open, tr.cleared_s, tr.false_since_s = False, t_s, None
        self._announce("cleared", rec)

    # -- evaluation ------------------------------------------------------------------
    def evaluate(self, t_s: float, conditions: list[Condition], *,
                 only: list[str] | None = None,
                 late: Callable[[], list[Condition]] | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
        """Update every alert from the conditions true at ``t_s`` [Unix s].

        ``only`` restricts the pass to those keys (the others keep their state).
        ``late()`` adds conditions read inside the pass, so an event handled by
        another thread meanwhile is not undone by an older reading (gateway status).
        Returns the alerts ``opened``, ``reopened`` and ``cleared`` in this pass.
        """
        with self.pass_lock:
            if late is not None:
                conditions = [*conditions, *late()]
            out = self._evaluate(t_s, conditions, only)
        for event, recs in out.items():  # push and mail outside the pass
            for rec in recs:
                self._announce(event, rec)
        return out

    def _evaluate(self, t_s: float, conditions: list[Condition], only: list[str] | None
                  ) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {"opened": [], "reopened": [], "cleared": []}
        with self._lock:
            now = {c.key: c for c in conditions}
            now.update(self._events)
            keys = set(only) if only is not None else set(now) | set(self._tracks)
            to_open: list[tuple[str, Condition]] = []
            to_reopen: list[tuple[str, _Track]] = []
            to_touch: list[int] = []
            to_clear: list[tuple[str, _Track]] = []
            for key in keys:
                cond = now.get(key)
                tr = self._tracks.get(key)
                if cond is not None:
                    if tr is None:
                        tr = self._tracks[key] = _Track(since_s=t_s)
                    tr.kind = cond.kind
                    if tr.open:
                        tr.false_since_s = None
                        to_touch.append(tr.alert_id)  # type: ignore[arg-type]
                    elif tr.alert_id is not None and tr.cleared_s is not None \
                            and t_s - tr.cleared_s <= self.reopen_within_s:
                        to_reopen.append((key, tr))
                    else:
                        if tr.cleared_s is not None:  # long gone: a fresh alert
                            tr = self._tracks[key] = _Track(since_s=t_s, kind=cond.kind)
                        if t_s - tr.since_s >= cond.delay_s:
                            to_open.append((key, cond))
                    continue
                if tr is None:
                    continue
                if not tr.open:
                    if tr.alert_id is None:  # never opened: forget the pending start
                        del self._tracks[key]
                    elif tr.cleared_s is not None and t_s - tr.cleared_s > self.reopen_within_s:
                        del self._tracks[key]
                    continue
                if tr.false_since_s is None:
                    tr.false_since_s = t_s
                hold = self.flap_hold_s if tr.flapping else self.clear_after_by_kind.get(
                    tr.kind or "", self.clear_after_s)
                if t_s - tr.false_since_s >= hold:
                    to_clear.append((key, tr))
        if not (to_open or to_reopen or to_touch or to_clear):
            return out
        with self.registry.session() as s:
            for key, cond in to_open:
                rec = alert_repo.open_alert(s, key, t_s, cond.severity, cond.kind, cond.message,
                                       site_id=cond.site_id, device_id=cond.device_id,
                                       rule_id=cond.rule_id)
                tr = self._tracks[key]
                tr.alert_id, tr.open, tr.false_since_s = rec["id"], True, None
                out["opened"].append(rec)
            for _key, tr in to_reopen:
                tr.reopen_times = [x for x in tr.reopen_times if t_s - x <= self.flap_window_s]
                tr.reopen_times.append(t_s)
                tr.flapping = tr.flapping or len(tr.reopen_times) >= self.flap_count
                rec = alert_repo.reopen_alert(s, tr.alert_id, t_s, tr.flapping)  # type: ignore[arg-type]
                tr.open, tr.cleared_s, tr.false_since_s = True, None, None
                out["reopened"].append(rec)
            if to_touch:
                alert_repo.touch_alerts(s, to_touch, t_s)
            for _key, tr in to_clear:
                rec = alert_repo.clear_alert(s, tr.alert_id, t_s)  # type: ignore[arg-type]
                tr.open, tr.cleared_s, tr.false_since_s = False, t_s, None
                out["cleared"].append(rec)
        self.opened += len(out["opened"])
        return out

    def open_keys(self) -> list[str]:
        """Keys of the alerts open now."""
        with self._lock:
            return sorted(k for k, tr in self._tracks.items() if tr.open)

    def _announce(self, event: str, rec: dict[str, Any]) -> None:
        if self.notify is not None:
            try:
                self.notify("alerts", {"event": event, "alert": rec})
            except Exception:
                log.exception("pushing alert %s failed", rec.get("id"))
        if self.email is not None and event == "opened":
            self.email.send_alert(rec)
