"""A data folder of the old telemetry layout: ``ecogrid serve`` and the app refuse it and name
the command that converts it; ``ecogrid history convert`` converts it, after which the
history API serves the old values."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from adapters.history import History, LegacyHistoryError
from api.cli.main import main
from api.cli.serve import preflight
from api.live.runtime import Runtime
from api.settings import Settings
from tests.adapters.test_history import _old_service_store


async def _open(settings: Settings) -> None:
    async with Runtime.open(settings, use_default_planner=False):
        pass


def test_the_service_refuses_an_old_layout_and_the_convert_command_fixes_it(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    t0 = 1_800_000_000.0
    _old_service_store(data, t0 + 10 * np.arange(4))
    settings = Settings(data_dir=data, mode="offline")
    problem = preflight(settings)
    assert problem is not None and f"ecogrid history convert --data-dir {data}" in problem
    with pytest.raises(LegacyHistoryError, match="ecogrid history convert"):
        asyncio.run(_open(settings))  # the app's lifespan: the same refusal

    assert main(["history", "convert", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "history.zarr: 4 snapshots of 2 devices" in out and "history-old-layout" in out
    assert preflight(settings) is None
    got = History(settings.history_root()).read(t0, t0 + 40, "p_kw", devices=["a"],
                                                 now_s=t0 + 40)
    assert got.values[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    # converting again finds nothing to do
    assert main(["history", "convert", "--data-dir", str(data)]) == 0
    assert "nothing to do" in capsys.readouterr().out
