"""Alerts: detectors over the twin's arrays, a manager that dedups and damps them,
their rules and life cycles in the registry (:mod:`adapters.registry.alerts`), push on the WebSocket and e-mail.

* :mod:`api.alerts.detectors` — pure functions, one boolean per device or site;
* :mod:`api.alerts.watch` — :class:`FleetWatch` turns one observation into conditions;
* :mod:`api.alerts.manager` — :class:`AlertManager`: durations, dedup, flapping, persistence;
* :mod:`api.alerts.email` — :class:`EmailNotifier` (smtplib);
* :mod:`api.alerts.loop` — :class:`AlertLoop`, the live service's evaluation loop and event hooks.

docs/alerts.md describes the kinds, their thresholds and the benchmark.
"""
