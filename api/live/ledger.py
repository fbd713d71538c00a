"""Live fleet KPIs for the API: generation, CO2 avoided and revenue, today and to date.

:class:`KpiLedger` is fed the site flows of each history snapshot
(:func:`twin.kpis.device_flows`) and values them with a :class:`twin.kpis.Tariff`
through :func:`twin.kpis.energy_value`, as the analytics do: each snapshot's
flows hold until the next snapshot, for at most ``max_gap_s``; generation is
PV output, revenue is export x export price, CO2 avoided is generation x grid
intensity. The figures are kept for today (UTC day) and to date in a small
JSON file, so they survive a restart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.kpis import Tariff, energy_value

log = logging.getLogger(__name__)

DAY_S = 86400.0


class KpiLedger:
    """Generation, CO2 avoided and revenue, today and to date.

    Parameters
    ----------
    path : Path
        JSON file where the totals are kept.
    tariff : Tariff
        Export price and grid carbon intensity (and import price).
    max_gap_s : float
        Longest time a snapshot's flows are held [s] (a longer gap, the service
        being down, counts this long only).
    """

    FIELDS = ("generation_mwh", "co2_avoided_t", "revenue_eur")

    def __init__(self, path: Path, tariff: Tariff, max_gap_s: float = 60.0):
        self.path = Path(path)
        self.tariff = tariff
        self.max_gap_s = max_gap_s
        self.total = dict.fromkeys(self.FIELDS, 0.0)
        self.today = dict.fromkeys(self.FIELDS, 0.0)
        self.day_start_s = 0.0
        self.last_t_s: float | None = None
        self.per_hour: dict[str, float] | None = None  # the last snapshot's figures per hour
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.total.update({k: float(data["total"][k]) for k in self.FIELDS})
                self.today.update({k: float(data["today"][k]) for k in self.FIELDS})
                self.day_start_s = float(data["day_start_s"])
                self.last_t_s = data.get("last_t_s")
                per_hour = data.get("per_hour")
                self.per_hour = None if per_hour is None else {
                    k: float(per_hour[k]) for k in self.FIELDS}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("KPI counters in %s are unreadable (%s); they restart at zero",
                            self.path, exc)

    def add(self, t_s: float, flows: Mapping[str, np.ndarray]) -> None:
        """Take the site flows of the snapshot at ``t_s`` [Unix s].

        ``flows`` are :func:`twin.kpis.device_flows` of the snapshot, per site
        [kW] (``generation_kw``, ``import_kw``, ``export_kw`` are used). The
        previous snapshot's flows count from its time to ``t_s`` (at most
        ``max_gap_s``), in the day of the previous snapshot; a snapshot not
        after the previous one is ignored.
        """
        if self.last_t_s is not None and t_s <= self.last_t_s:
            return
        if self.last_t_s is not None and self.per_hour is not None:
            dt_h = min(t_s - self.last_t_s, self.max_gap_s) / 3600.0
            for k, v in self.per_hour.items():
                self.total[k] += v * dt_h
                self.today[k] += v * dt_h
        day = math.floor(t_s / DAY_S) * DAY_S
        if day != self.day_start_s:
            self.today = dict.fromkeys(self.FIELDS, 0.0)
            self.day_start_s = day
        # Energies of one hour at this snapshot's powers [kWh], valued at its time.
        gen_kwh = np.asarray(flows["generation_kw"], dtype=np.float64)
        value = energy_value(t_s, gen_kwh, flows["import_kw"], flows["export_kw"], self.tariff)
        self.per_hour = {"generation_mwh": float(gen_kwh.sum()) / 1000.0,
                         "co2_avoided_t": float(value["co2_avoided_kg"].sum()) / 1000.0,
                         "revenue_eur": float(value["revenue_eur"].sum())}
        self.last_t_s = t_s

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"total": self.total, "today": self.today,
                                   "day_start_s": self.day_start_s, "last_t_s": self.last_t_s,
                                   "per_hour": self.per_hour}))
        tmp.replace(self.path)

    def figures(self) -> dict[str, Any]:
        return {"today": {k: round(v, 6) for k, v in self.today.items()},
                "to_date": {k: round(v, 6) for k, v in self.total.items()}}
