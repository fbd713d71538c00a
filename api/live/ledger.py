"""Live fleet KPIs for the API: capacity, live generation and consumption, CO2 avoided, revenue.

:class:`KpiLedger` integrates the live fleet generation over time (called at
each history snapshot) into energy, CO2 avoided and revenue, for today (UTC
day) and to date, and keeps the figures in a small JSON file so they survive
a restart. CO2 avoided is the generated energy times a grid carbon intensity
and revenue the generated energy times a price (both settings), a stated
approximation until the live service gets market and carbon feeds.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DAY_S = 86400.0


class KpiLedger:
    """Energy, CO2 avoided and revenue, today and to date.

    Parameters
    ----------
    path : Path
        JSON file where the totals are kept.
    co2_kg_per_mwh : float
        Carbon intensity of the displaced grid energy [kg/MWh].
    price_eur_per_mwh : float
        Value of the generated energy [EUR/MWh].
    """

    FIELDS = ("generation_mwh", "co2_avoided_t", "revenue_eur")

    def __init__(self, path: Path, co2_kg_per_mwh: float, price_eur_per_mwh: float):
        self.path = Path(path)
        self.co2_kg_per_mwh = co2_kg_per_mwh
        self.price_eur_per_mwh = price_eur_per_mwh
        self.total = dict.fromkeys(self.FIELDS, 0.0)
        self.today = dict.fromkeys(self.FIELDS, 0.0)
        self.day_start_s = 0.0
        self.last_t_s: float | None = None
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.total.update({k: float(data["total"][k]) for k in self.FIELDS})
                self.today.update({k: float(data["today"][k]) for k in self.FIELDS})
                self.day_start_s = float(data["day_start_s"])
                self.last_t_s = data.get("last_t_s")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("KPI counters in %s are unreadable (%s); they restart at zero",
                            self.path, exc)

    def add(self, t_s: float, generation_mw: float, max_gap_s: float = 60.0) -> None:
        """Integrate ``generation_mw`` [MW] from the previous call up to ``t_s`` [s].

        Gaps longer than ``max_gap_s`` (the service was down) are not filled in.
        """
        day = math.floor(t_s / DAY_S) * DAY_S
        if day != self.day_start_s:
            self.today = dict.fromkeys(self.FIELDS, 0.0)
            self.day_start_s = day
        if self.last_t_s is not None and 0 < t_s - self.last_t_s <= max_gap_s:
            mwh = max(generation_mw, 0.0) * (t_s - self.last_t_s) / 3600.0
            inc = {"generation_mwh": mwh, "co2_avoided_t": mwh * self.co2_kg_per_mwh / 1000.0,
                   "revenue_eur": mwh * self.price_eur_per_mwh}
            for k, v in inc.items():
                self.total[k] += v
                self.today[k] += v
        self.last_t_s = t_s

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"total": self.total, "today": self.today,
                                   "day_start_s": self.day_start_s, "last_t_s": self.last_t_s}))
        tmp.replace(self.path)

    def figures(self) -> dict[str, Any]:
        return {"today": {k: round(v, 6) for k, v in self.today.items()},
                "to_date": {k: round(v, 6) for k, v in self.total.items()}}
