"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections see only a fresh private schema of the test PostgreSQL
    database (``CLEANROOM_TEST_POSTGRES_URL``); the schema is dropped after the test.

    Skips when the variable is unset; under ``CI=true`` an unreachable server fails the
    test instead of skipping it.
    """
    base = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail("CLEANROOM_TEST_POSTGRES_URL is set but PostgreSQL is unreachable")
        pytest.skip("PostgreSQL at CLEANROOM_TEST_POSTGRES_URL is unreachable")
    scoped = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
