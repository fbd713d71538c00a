"""Alerts: detectors over the twin's arrays, a manager that dedups and damps them,
their rules and life cycles in the registry, push on the WebSocket and e-mail.

* :mod:`api.alerts.detectors` — pure functions, one boolean per device or site;
* :mod:`api.alerts.watch` — :class:`FleetWatch` turns one observation into conditions;
* :mod:`api.alerts.manager` — :class:`AlertManager`: durations, dedup, flapping, persistence;
* :mod:`api.alerts.store` — the ``alert_rules`` and ``alert_states`` tables;
* :mod:`api.alerts.email` — :class:`EmailNotifier` (smtplib);
* :mod:`api.alerts.loop` — :class:`LiveAlerts`, the live service's loop and event hooks.

docs/alerts.md describes the kinds, their thresholds and the benchmark.
"""
