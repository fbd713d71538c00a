"""Settings: a removed setting is refused and named with what replaces it, wherever it is set;
the telemetry store's URL is a folder or file:// only."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import Settings, load_settings


def test_a_removed_setting_is_refused_from_every_source(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="ECOGRID_PRICE_EUR_PER_MWH was removed; use "
                                         "ECOGRID_EXPORT_PRICE_EUR_PER_MWH"):
        Settings(price_eur_per_mwh=90.0)  # type: ignore[call-arg]
    config = tmp_path / "settings.env"
    config.write_text("ECOGRID_DATA_DIR=/tmp/x\nECOGRID_PRICE_EUR_PER_MWH=90\n")
    with pytest.raises(ValueError, match="ECOGRID_PRICE_EUR_PER_MWH was removed"):
        load_settings(config)
    monkeypatch.setenv("ECOGRID_PRICE_EUR_PER_MWH", "90")
    with pytest.raises(ValueError, match="ECOGRID_PRICE_EUR_PER_MWH was removed"):
        load_settings(None)


def test_the_history_url_is_a_folder_or_a_file_url(tmp_path):
    assert Settings(data_dir=tmp_path).history_root() == tmp_path / "history"
    assert Settings(history_url=f"file://{tmp_path}/h").history_root() == Path(f"{tmp_path}/h")
    with pytest.raises(ValueError, match="only a folder or a file:// URL"):
        load_settings(None, history_url="s3://bucket/history")
