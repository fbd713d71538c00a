"""Boundary types of the live service: what it needs from the MQTT side and the optimizer.

The live service (``api.live.service``) talks to the outside world only through
these protocols, so the API, the registry and the approval loop can be
built and tested on their own, and the adapters plug in at start.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from twin.fleet import Fleet


class CommandLink(Protocol):
    """Sends setpoints to devices; versions and acknowledgements are its business."""

    def send(self, command: dict[str, Any], now_s: float) -> None:
        """Publish one registry command (``id``, ``device_id``, ``value`` [kW],
        ``valid_until_s``); raises ValueError when it refuses it."""

    def connected(self) -> bool:
        """True while the broker connection is up."""


class Planner(Protocol):
    """Computes a dispatch plan from the twin's current state."""

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        """Return ``setpoints`` (``{kind: {device_id: [value per step]}}``), ``kpis``
        (cost_eur, revenue_eur, co2_kg, peak_import_kw), ``solver_status`` and
        ``solver_time_s``."""
