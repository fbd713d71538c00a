"""Analytics of the live fleet, from the one telemetry store:

* :mod:`api.analytics.market` — the prices and carbon intensity the service plans and
  counts with (one :class:`~twin.kpis.Tariff` for the planner, the live KPIs, the
  analytics and the reports);
* :mod:`api.analytics.energy` — energy, money and CO2 per site and fleet, per
  hour/day/month, and the power flows of ``/history``, read block by block from
  the tier of the store that the range calls for;
* :mod:`api.analytics.reports` — reports of a day, week or month as CSV, HTML or
  PDF, on demand or on a schedule.

The definitions (generation = PV output, cost = import x import price, ...) are
:mod:`twin.kpis`'s; nothing here defines them again.
"""
