"""Boundary types of the live runtime: what its parts need from each other and the outside.

The parts (:mod:`api.live.runtime` builds them) talk through these protocols and
callables only, so each can be built and tested on its own and the adapters plug
in at start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from twin.fleet import Fleet

#: ``notify(channel, message)``: announce an event on a WebSocket channel (any thread).
Notify = Callable[[str, dict[str, Any]], None]
#: ``clock() -> Unix s``: wall-clock time enters the runtime only through this.
Clock = Callable[[], float]


class ServiceUnavailable(RuntimeError):
    """A part of the live service is not running here (broker, optimizer, a role's part);
    HTTP 503."""


class PlannerUnavailable(ServiceUnavailable):
    """The optimizer worker could not answer this call: it died, hung (and was stopped),
    or the planner is closed. The next call starts a new worker; HTTP 503."""


class CommandLink(Protocol):
    """Sends setpoints to devices; versions and acknowledgements are its business.

    Every method is all or nothing for its batch: a refused batch raises
    ``ValueError`` (a command the link will not take) or ``ConnectionError`` (no
    broker) and then none of its commands went out.
    """

    def reserve(self, device_ids: list[str]) -> None:
        """Reserve the next command versions of these devices in one transaction (before a
        burst of sends, so the burst writes none)."""

    def send_new(self, items: list[dict[str, Any]], now_s: float) -> None:
        """Publish commands that have no registry row yet (``device_id``, ``value`` [kW],
        ``valid_until_s``, ``source``, ``plan_id``, ``created_by``, ``due_s``); the link's
        command store writes their rows behind."""

    def send_many(self, commands: list[dict[str, Any]], now_s: float
                  ) -> list[tuple[dict[str, Any], str]]:
        """Publish registry commands (``id``, ``device_id``, ``value`` [kW],
        ``valid_until_s``); returns the ones refused, each with the reason (the others
        went out)."""

    def connected(self) -> bool:
        """True while the broker connection is up."""

    def set_fleet(self, fleet: Fleet) -> None:
        """Devices changed: take commands for the devices of ``fleet`` from now on."""


class Planner(Protocol):
    """Computes a dispatch plan from the twin's current state."""

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        """Return ``setpoints`` (``{kind: {device_id: [value per step]}}``), ``kpis``
        (cost_eur, revenue_eur, co2_kg, peak_import_kw), ``solver_status`` and
        ``solver_time_s``."""
