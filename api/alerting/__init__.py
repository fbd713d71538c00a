"""Alerts: detectors over the twin's arrays, a manager that dedups and damps them,
their rules and life cycles in the registry, push on the WebSocket and e-mail.

* :mod:`api.alerting.detectors` — pure functions, one boolean per device or site;
* :mod:`api.alerting.watch` — :class:`FleetWatch` turns one observation into conditions;
* :mod:`api.alerting.manager` — :class:`AlertManager`: durations, dedup, flapping, persistence;
* :mod:`api.alerting.store` — the ``alert_rules`` and ``alert_states`` tables;
* :mod:`api.alerting.email` — :class:`EmailNotifier` (smtplib);
* :mod:`api.alerting.live` — :class:`LiveAlerts`, the live service's loop and event hooks.

docs/alerts.md describes the kinds, their thresholds and the benchmark.
"""
