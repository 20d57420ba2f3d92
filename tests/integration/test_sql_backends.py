"""Enclave SQL on SQLite and PostgreSQL: same answers as plaintext, atomic ALTER, no leaks.

Each query runs twice through the engine: on a table whose columns are encrypted
(randomized and deterministic) and on a plaintext copy of the same rows. The answers must be
identical. ``ALTER COLUMN`` with a crash injected half way leaves the table and its catalog
exactly as they were. The operator's logs and database never hold a plaintext value of an
encrypted column or an encrypted parameter.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import AttestationSettings, Connection, QueryEngine, connect, simulated_enclave
from cleanroom.store import ColumnSpec, DatasetSchema, Store, open_store
from cleanroom.tee import SimulatedLauncher

ENCRYPTED = DatasetSchema(
    table="Enc",
    columns=(
        ColumnSpec("age", "int"),
        ColumnSpec("name", "nvarchar(20)"),
        ColumnSpec("site", "varchar(10)", encryption="deterministic"),
        ColumnSpec("score", "float"),
        ColumnSpec("born", "date"),
        ColumnSpec("visits", "int", encrypted=False),
    ),
)
PLAIN = DatasetSchema(table="Plain", columns=ENCRYPTED.plaintext().columns)
NAMES = ["alice", "Alice", "bob", "bobby", "carol", "dave", "Eve", "zoe", "ab", "b"]


def _rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    return [
        {
            "age": maybe(rng.randint(0, 100)),
            "name": maybe(rng.choice(NAMES)),
            "site": maybe(rng.choice(["x", "y", "z"])),
            "score": maybe(round(rng.uniform(-5, 5), 2)),
            "born": maybe(dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 20000))),
            "visits": maybe(rng.randint(0, 9)),
        }
        for _ in range(count)
    ]


@dataclass
class Backend:
    store: Store
    client: PartyClient
    key_store: LocalKeyStore
    engine: QueryEngine
    settings: AttestationSettings

    def connect(self) -> Connection:
        return connect(self.engine, self.key_store, party="p", attestation=self.settings)


def _postgres_url(schema: str) -> str | None:
    base = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    if not base:
        return None
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is unreachable under CI")
        pytest.skip("PostgreSQL is unreachable")
    finally:
        admin.dispose()
    scoped = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False)


def _drop_schema(schema: str) -> None:
    admin = sa.create_engine(os.environ["CLEANROOM_TEST_POSTGRES_URL"])
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(scope="module")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _make_backend(kind: str, root: Path, launcher: SimulatedLauncher) -> Iterator[Backend]:
    schema = f"cr_sql_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        url: str | None = f"sqlite:///{root / 'store.db'}"
    else:
        url = _postgres_url(schema)
        if url is None:
            pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    assert url is not None
    store = open_store(url)
    key_store = LocalKeyStore(root / "keys")
    client = PartyClient(store, key_store, party="p")
    client.create_keys()
    client.create_keys(cmk_name="CMK_next", cek_name="CEK_next")
    client.create_dataset(ENCRYPTED)
    client.create_dataset(PLAIN)
    rows = _rows(120, seed=7)
    client.import_records(rows, dataset="Enc")
    client.import_records(rows, dataset="Plain")
    enclave, measurement = simulated_enclave(launcher)
    settings = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    # A small batch size makes every query cross several enclave batches.
    engine = QueryEngine(store, enclave=enclave, batch_size=32)
    yield Backend(store, client, key_store, engine, settings)
    store.close()
    if kind == "postgresql":
        _drop_schema(schema)


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    launcher: SimulatedLauncher,
) -> Iterator[Backend]:
    """One backend per module for the read-only query tests."""
    yield from _make_backend(request.param, tmp_path_factory.mktemp("sql"), launcher)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, launcher: SimulatedLauncher
) -> Iterator[Backend]:
    """A fresh backend for tests that alter the table."""
    yield from _make_backend(request.param, tmp_path, launcher)


QUERIES: list[tuple[str, tuple[Any, ...]]] = [
    ("SELECT name, age FROM {t} WHERE age = ?", (40,)),
    ("SELECT name, age FROM {t} WHERE age <> ?", (40,)),
    ("SELECT name, age FROM {t} WHERE age < ?", (30,)),
    ("SELECT name, age FROM {t} WHERE age <= ?", (30,)),
    ("SELECT name, age FROM {t} WHERE age > ?", (70,)),
    ("SELECT name, age FROM {t} WHERE age >= ?", (70,)),
    ("SELECT name, age FROM {t} WHERE ? < age", (70,)),
    ("SELECT * FROM {t} WHERE age BETWEEN ? AND ?", (20, 35)),
    ("SELECT * FROM {t} WHERE age NOT BETWEEN ? AND ?", (20, 80)),
    ("SELECT name FROM {t} WHERE name IN (?, ?, ?)", ("alice", "Eve", "nobody")),
    ("SELECT name FROM {t} WHERE name NOT IN (?, ?)", ("alice", "bob")),
    ("SELECT name FROM {t} WHERE name LIKE ?", ("%b%",)),
    ("SELECT name FROM {t} WHERE name LIKE ?", ("[A-C]%",)),
    ("SELECT name FROM {t} WHERE name NOT LIKE ?", ("_o%",)),
    ("SELECT name FROM {t} WHERE name < ? ORDER BY name", ("bob",)),
    ("SELECT name, site FROM {t} WHERE site = ?", ("x",)),
    ("SELECT name, site FROM {t} WHERE site <> ? AND age > ?", ("x", 50)),
    ("SELECT name FROM {t} WHERE site IN (?, ?) OR score > ?", ("y", "z", 4.0)),
    ("SELECT * FROM {t} WHERE NOT (age > ? OR score < ?)", (50, 0.0)),
    (
        "SELECT * FROM {t} WHERE (age > ? AND name LIKE ?) OR born < ?",
        (50, "%a%", dt.date(1960, 1, 1)),
    ),
    ("SELECT * FROM {t} WHERE age > @a AND visits IN (1, 2, 3)", (("a", 10),)),
    ("SELECT * FROM {t} WHERE score IS NULL OR age IS NOT NULL AND visits > 5", ()),
    ("SELECT * FROM {t} ORDER BY age", ()),
    ("SELECT * FROM {t} ORDER BY name DESC, age", ()),
    ("SELECT * FROM {t} ORDER BY born DESC, visits", ()),
    ("SELECT * FROM {t} ORDER BY score", ()),
    ("SELECT TOP (7) name, score FROM {t} WHERE age > ? ORDER BY score DESC", (10,)),
    ("SELECT COUNT(*), COUNT(age), MIN(age), MAX(age), MIN(name), MAX(born) FROM {t}", ()),
    ("SELECT COUNT(*), MIN(score), MAX(name) FROM {t} WHERE age BETWEEN ? AND ?", (30, 60)),
    ("SELECT COUNT(*), MAX(age) FROM {t} WHERE age > ?", (1000,)),
    ("SELECT name, age FROM {t} TABLESAMPLE (40 PERCENT) REPEATABLE (5) WHERE age > ?", (20,)),
    ("SELECT COUNT(*) FROM {t} TABLESAMPLE (25 PERCENT) REPEATABLE (9)", ()),
]


def _params(raw: tuple[Any, ...]) -> Any:
    if raw and isinstance(raw[0], tuple):
        return dict(raw)
    return raw


@pytest.mark.parametrize(("sql", "params"), QUERIES, ids=[q for q, _ in QUERIES])
def test_encrypted_answers_equal_plaintext_answers(
    shared: Backend, sql: str, params: tuple[Any, ...]
) -> None:
    with shared.connect() as connection:
        encrypted = connection.execute(sql.format(t="Enc"), _params(params))
        plain = connection.execute(sql.format(t="Plain"), _params(params))
        assert encrypted.fetchall() == plain.fetchall()
        assert encrypted.description == plain.description


ALTERS = [
    # encrypt a plaintext column
    "ALTER TABLE Enc ALTER COLUMN visits int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = CEK_p, "
    "ENCRYPTION_TYPE = Randomized, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')",
    # rotate to another key (and to deterministic)
    "ALTER TABLE Enc ALTER COLUMN age int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = CEK_next, "
    "ENCRYPTION_TYPE = Deterministic, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')",
    # decrypt
    "ALTER TABLE Enc ALTER COLUMN name nvarchar(20)",
]


def _snapshot(store: Store) -> tuple[Any, ...]:
    with store.engine.connect() as conn:
        table = conn.exec_driver_sql("SELECT * FROM ds_p_enc ORDER BY row_id").all()
        columns = conn.exec_driver_sql(
            "SELECT column_name, encryption_type, column_encryption_key_name "
            "FROM encrypted_columns ORDER BY table_name, column_name"
        ).all()
        schema = conn.exec_driver_sql("SELECT schema_json FROM datasets ORDER BY table_name").all()
    return (
        [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in table],
        columns,
        schema,
    )


class Crash(Exception):
    pass


@pytest.mark.parametrize("statement", ALTERS, ids=["encrypt", "rotate", "decrypt"])
def test_alter_column_is_atomic_and_correct(backend: Backend, statement: str) -> None:
    before = _snapshot(backend.store)
    expected = backend.client.read("Plain")

    def crash(rows_done: int) -> None:
        if rows_done >= 64:  # two batches of 32 written, more to go
            raise Crash

    backend.engine._alter_progress = crash
    with backend.connect() as connection:
        with pytest.raises(Crash):
            connection.execute(statement)
        assert _snapshot(backend.store) == before
        backend.engine._alter_progress = None
        assert connection.execute(statement).rowcount == 120
        after = connection.execute("SELECT * FROM Enc").fetchall()
        assert after == [tuple(r.values()) for r in expected]
        changed = _snapshot(backend.store)
        assert changed != before
        # The altered column still answers queries like the plaintext one.
        for sql, params in QUERIES[:3] + QUERIES[9:12]:
            assert (
                connection.execute(sql.format(t="Enc"), params).fetchall()
                == connection.execute(sql.format(t="Plain"), params).fetchall()
            )


MARKER = "QZV-needle-5e2f1aPA"
SECRET_NAME = "Xylophone-8c41b9d2e7"
SECRET_AGE = 1_234_567_891


def _forms() -> list[bytes]:
    out = []
    for text in (MARKER, SECRET_NAME):
        out += [text.encode(), text.encode("utf-16-le")]
    out += [str(SECRET_AGE).encode(), struct.pack("<q", SECRET_AGE)]
    return out


def _raw_database(backend: Backend) -> bytes:
    if backend.store.dialect == "sqlite":
        path = Path(str(backend.store.engine.url.database))
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    with backend.store.engine.connect() as conn:
        dump = conn.exec_driver_sql("SELECT string_agg(t::text, '\n') FROM ds_p_enc t").scalar()
        statements = conn.exec_driver_sql(
            "SELECT coalesce(string_agg(query, '\n'), '') FROM pg_stat_activity"
        ).scalar()
    return f"{dump}\n{statements}".encode()


def test_operator_logs_and_database_hold_no_plaintext(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend.client.import_records(
        [
            {
                "age": SECRET_AGE,
                "name": SECRET_NAME,
                "site": "x",
                "score": 1.0,
                "born": None,
                "visits": 1,
            }
        ],
        dataset="Enc",
    )
    with backend.connect() as connection:
        found = connection.execute(
            "SELECT name FROM Enc WHERE name = ? OR name LIKE ? OR age = ? ORDER BY name",
            (MARKER, "Xylo%", SECRET_AGE),
        ).fetchall()
        assert found == [(SECRET_NAME,)]
        top = connection.execute("SELECT MAX(age), MIN(name) FROM Enc WHERE age > ?", (0,))
        assert top.fetchall()[0][0] == SECRET_AGE
        connection.execute(
            "ALTER TABLE Enc ALTER COLUMN name nvarchar(20) ENCRYPTED WITH "
            "(COLUMN_ENCRYPTION_KEY = CEK_next, ENCRYPTION_TYPE = Randomized)"
        )
        assert connection.execute(
            "SELECT name FROM Enc WHERE name = ?", (SECRET_NAME,)
        ).fetchall() == [(SECRET_NAME,)]
    raw = _raw_database(backend)
    assert raw  # the scan sees the database
    assert [form for form in _forms() if form in raw] == []
    logged = caplog.text
    assert MARKER not in logged
    assert SECRET_NAME not in logged
    assert str(SECRET_AGE) not in logged
