"""Shared fixtures. Keep this file small: the logic lives in the packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.broker import Broker


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto on a free port for one test module (persistence on)."""
    broker = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mqtt_url(mosquitto: Broker) -> str:
    """URL (``mqtt://127.0.0.1:PORT``) of the module's private Mosquitto."""
    return mosquitto.url
