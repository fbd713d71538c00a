"""docs/configuration.md lists every setting; docs/glossary.md every alert kind and metric."""

from __future__ import annotations

from pathlib import Path

from api.alerts.watch import ANOMALY_KINDS
from api.settings import Settings
from twin.telemetry import METRICS

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_every_setting_is_in_the_configuration_table():
    text = (DOCS / "configuration.md").read_text()
    missing = [n for n in Settings.model_fields if f"`ECOGRID_{n.upper()}`" not in text]
    assert missing == []


def test_glossary_names_the_alert_kinds_and_metrics():
    text = (DOCS / "glossary.md").read_text()
    kinds = {*ANOMALY_KINDS, "gateway_offline", "device_offline", "stale", "threshold",
             "site_over_limit", "command_rejected", "command_expired", "command_failed",
             "optimizer_fallback"}
    assert [k for k in sorted(kinds) if f"`{k}`" not in text] == []
    assert [m for m in METRICS if f"`{m}`" not in text] == []
