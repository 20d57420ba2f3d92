"""Fixtures: stores on SQLite and (when configured) PostgreSQL, and an enclave key."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cleanroom.contract import SigningKey
from cleanroom.store import Store, open_store


@pytest.fixture(params=["ed25519", "p256"], scope="session")
def enclave_key(request: pytest.FixtureRequest) -> SigningKey:
    return SigningKey.generate(request.param)


def _postgres_url() -> str | None:
    url = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    if not url:
        return None
    try:
        engine = sa.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail("CLEANROOM_TEST_POSTGRES_URL is set but PostgreSQL is unreachable")
        pytest.skip("PostgreSQL at CLEANROOM_TEST_POSTGRES_URL is unreachable")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store: a SQLite file, or a private schema in the test PostgreSQL database."""
    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
            yield opened
        return
    url = _postgres_url()
    if url is None:
        pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        with open_store(scoped.render_as_string(hide_password=False)) as opened:
            yield opened
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
