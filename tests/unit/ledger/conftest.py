"""Fixtures: stores on SQLite and (when configured) PostgreSQL, and an enclave key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.contract import SigningKey
from cleanroom.store import Store, open_store


@pytest.fixture(params=["ed25519", "p256"], scope="session")
def enclave_key(request: pytest.FixtureRequest) -> SigningKey:
    return SigningKey.generate(request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store: a SQLite file, or a private schema in the test PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as opened:
        yield opened
