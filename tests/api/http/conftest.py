"""Fixtures of the HTTP tests that run one app per module.

A module defines ``served`` (``(url, app)`` of its running app, with the admin
:data:`ADMIN`); these give it a client and signed-in users of each role.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.server import ADMIN, add_user, login


@pytest.fixture(scope="module")
def client(served: tuple[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def admin(client: httpx.Client) -> dict[str, str]:
    return login(client, *ADMIN)


@pytest.fixture(scope="module")
def operator(client: httpx.Client, admin: dict[str, str]) -> dict[str, str]:
    return add_user(client, admin, "olga", "olga-pass-1", "operator")


@pytest.fixture(scope="module")
def viewer(client: httpx.Client, admin: dict[str, str]) -> dict[str, str]:
    return add_user(client, admin, "vic", "vic-pass-12", "viewer")
