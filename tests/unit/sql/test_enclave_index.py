"""Sealed enclave indexes: exact answers with and without the index, sealed, dropped on ALTER.

Each backend (SQLite, PostgreSQL) holds the same rows twice: ``Enc`` (randomized and
deterministic columns) and ``Plain`` (the plaintext copy). A query on an indexed column must
give what the unindexed scan gave and what the plaintext table gives, also after rows are
appended past the index; the catalog blob holds no plaintext and refuses tampering.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.crypto import CellCipher, ColumnEncryptionKey
from cleanroom.errors import DecryptionError, QueryError
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import (
    AttestationSettings,
    Connection,
    EnclaveStatement,
    QueryEngine,
    connect,
    simulated_enclave,
)
from cleanroom.sql._select import _Select
from cleanroom.sql.evaluate import ColumnBinding, ColumnData
from cleanroom.sql.index import IndexBuilder, unseal
from cleanroom.sql.parser import CreateIndexPlan, DropIndexPlan, parse
from cleanroom.store import ColumnSpec, DatasetSchema, Store, open_store
from cleanroom.tee import SimulatedLauncher

ENC_COLUMNS = (
    ColumnSpec("k", "int", encrypted=False),
    ColumnSpec("v", "int"),
    ColumnSpec("w", "nvarchar(20)"),
    ColumnSpec("d", "int", encryption="deterministic"),
)
_tables = itertools.count()


@dataclass
class Backend:
    store: Store
    client: PartyClient
    db: Connection

    def tables(self, rows: list[dict[str, Any]]) -> tuple[str, str]:
        """Fresh ``Enc<n>`` and ``Plain<n>`` tables holding ``rows``."""
        n = next(_tables)
        enc = DatasetSchema(table=f"Enc{n}", columns=ENC_COLUMNS)
        plain = DatasetSchema(table=f"Plain{n}", columns=enc.plaintext().columns)
        for schema in (enc, plain):
            self.client.create_dataset(schema)
            if rows:
                self.client.import_records(rows, dataset=schema.table)
        return enc.table, plain.table

    def append(self, tables: tuple[str, str], rows: list[dict[str, Any]]) -> None:
        for table in tables:
            if rows:
                self.client.import_records(rows, dataset=table)

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return sorted(self.db.execute(sql, params).fetchall(), key=repr)


@pytest.fixture(scope="module")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True)


def _backend(url: str, root: Path, launcher: SimulatedLauncher) -> Backend:
    store = open_store(url)
    key_store = LocalKeyStore(root / "keys")
    client = PartyClient(store, key_store, party="p")
    client.create_keys()
    enclave, measurement = simulated_enclave(launcher, decrypt_workers=0)
    attestation = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    engine = QueryEngine(store, enclave=enclave)
    db = connect(engine, key_store, party="p", attestation=attestation, decrypt_workers=0)
    return Backend(store, client, db)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, launcher: SimulatedLauncher
) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = _backend(url, tmp_path, launcher)
    yield made
    made.db.close()
    made.store.close()


@contextmanager
def index_calls() -> Iterator[list[int]]:
    """Count the candidates the enclave's index search returns (one entry per query)."""
    calls: list[int] = []
    original = EnclaveStatement.index_candidates

    def spy(self: EnclaveStatement, column: str, blob: bytes) -> Any:
        found = original(self, column, blob)
        calls.append(-1 if found is None else len(found[0]))
        return found

    with mock.patch.object(EnclaveStatement, "index_candidates", spy):
        yield calls


# -- hypothesis: indexed == unindexed == plaintext --------------------------------------------

VALUE = st.one_of(st.none(), st.integers(-4, 4))
WORD = st.one_of(st.none(), st.sampled_from(["", "a", "ab", "b", "ba", "Z", "é"]))
ROWS = st.lists(st.fixed_dictionaries({"v": VALUE, "w": WORD, "d": VALUE}), max_size=25)
PARAM = st.one_of(st.none(), st.integers(-7, 7))  # bounds outside the data too


@st.composite
def range_predicate(draw: st.DrawFn, column: str = "v") -> tuple[str, list[Any]]:
    values = PARAM if column == "v" else WORD
    kind = draw(st.sampled_from(["<", "<=", ">", ">=", "=", "between", "in", "range"]))
    if kind == "between":
        return f"{column} BETWEEN ? AND ?", [draw(values), draw(values)]
    if kind == "in":
        items = draw(st.lists(values, min_size=1, max_size=3))
        return f"{column} IN ({', '.join('?' * len(items))})", items
    if kind == "range":
        return f"{column} >= ? AND {column} < ?", [draw(values), draw(values)]
    return f"{column} {kind} ?", [draw(values)]


@st.composite
def query(draw: st.DrawFn) -> tuple[str, list[Any]]:
    where, params = draw(range_predicate())
    extra = draw(st.sampled_from(["", "w", "d", "k", "wrange"]))
    if extra == "w":
        where, params = f"{where} AND w LIKE ?", [*params, draw(st.sampled_from(["a%", "%", "b"]))]
    elif extra == "d":
        where, params = f"{where} AND d = ?", [*params, draw(st.integers(-4, 4))]
    elif extra == "k":
        where, params = f"{where} AND k > ?", [*params, draw(st.integers(0, 20))]
    elif extra == "wrange":
        more, values = draw(range_predicate("w"))
        where, params = f"{where} AND {more}", [*params, *values]
    shape = draw(st.sampled_from(["rows", "count", "top"]))
    if shape == "count":
        return f"SELECT COUNT(*), MIN(v), MAX(w) FROM {{t}} WHERE {where}", params  # noqa: S608
    if shape == "top":
        return f"SELECT TOP (3) k, v FROM {{t}} WHERE {where} ORDER BY v DESC, w", params  # noqa: S608
    return f"SELECT k, v, w, d FROM {{t}} WHERE {where}", params  # noqa: S608


def _numbered(rows: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    return [{**row, "k": start + i} for i, row in enumerate(rows)]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(first=ROWS, later=ROWS, queries=st.lists(query(), min_size=1, max_size=3))
def test_indexed_equals_unindexed_equals_plaintext(
    backend: Backend,
    first: list[dict[str, Any]],
    later: list[dict[str, Any]],
    queries: list[tuple[str, list[Any]]],
) -> None:
    enc, plain = backend.tables(_numbered(first, 0))
    unindexed = [backend.rows(sql.format(t=enc), params) for sql, params in queries]
    expected = [backend.rows(sql.format(t=plain), params) for sql, params in queries]
    assert unindexed == expected
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    backend.db.execute(f"CREATE INDEX ix_w ON {enc} (w)")
    with index_calls() as calls:
        indexed = [backend.rows(sql.format(t=enc), params) for sql, params in queries]
    assert indexed == expected
    assert len(calls) == len(queries)  # every query went through an index
    backend.append((enc, plain), _numbered(later, len(first)))
    expected = [backend.rows(sql.format(t=plain), params) for sql, params in queries]
    with index_calls() as calls:
        assert [backend.rows(sql.format(t=enc), params) for sql, params in queries] == expected
    assert len(calls) == len(queries)


# -- behaviour ------------------------------------------------------------------------------

ROWS_FIXED = [
    {"k": i, "v": v, "w": w, "d": i % 3}
    for i, (v, w) in enumerate(
        [(5, "zebra"), (1, "ant"), (None, "cat"), (5, None), (123456789, "zebra-unique-123")]
        + [(i % 50, f"w{i}") for i in range(200)]
    )
]


def _catalog(store: Store) -> sa.Table:
    return sa.Table("cr_enclave_index", sa.MetaData(), autoload_with=store.engine)


def _blob(store: Store, name: str) -> bytes:
    table = _catalog(store)
    with store.engine.connect() as conn:
        return bytes(
            conn.execute(sa.select(table.c.blob).where(table.c.index_name == name)).scalar_one()
        )


def _set_blob(store: Store, name: str, blob: bytes) -> None:
    table = _catalog(store)
    with store.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.index_name == name).values(blob=blob))


def test_index_narrows_the_rows_read(backend: Backend) -> None:
    enc, plain = backend.tables(ROWS_FIXED)
    assert backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)").rowcount == len(ROWS_FIXED) - 1
    sql = "SELECT k, w FROM {t} WHERE v BETWEEN ? AND ? AND w LIKE ?"
    with index_calls() as calls:
        got = backend.rows(sql.format(t=enc), (4, 6, "w%"))
    assert got == backend.rows(sql.format(t=plain), (4, 6, "w%"))
    assert calls == [2 + 3 * 4]  # v in 4..6: two rows of 5, then 4, 5, 6 of i % 50 four times
    # OR is not narrowed by the index: a full scan, the same answer.
    sql = "SELECT k FROM {t} WHERE v = ? OR w = ?"
    with index_calls() as calls:
        assert backend.rows(sql.format(t=enc), (5, "cat")) == backend.rows(
            sql.format(t=plain), (5, "cat")
        )
    assert calls == []


def test_no_plaintext_in_the_catalog(backend: Backend) -> None:
    enc, _ = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    backend.db.execute(f"CREATE INDEX ix_w ON {enc} (w)")
    table = _catalog(backend.store)
    with backend.store.engine.connect() as conn:
        stored = conn.execute(sa.select(table)).all()
    assert {row.index_name for row in stored} == {"ix_v", "ix_w"}
    dump = b"".join(repr(tuple(row)).encode() + bytes(row.blob) for row in stored)
    for needle in (
        struct.pack("<q", 123456789),
        "zebra-unique-123".encode("utf-16-le"),
        b"zebra-unique-123",
        b"123456789",
        b"CRIX",
    ):
        assert needle not in dump


def test_tampered_blob_is_refused(backend: Backend) -> None:
    enc, _ = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    backend.db.execute(f"CREATE INDEX ix_d ON {enc} (d)")
    blob = _blob(backend.store, "ix_v")
    for position in (1, len(blob) // 2, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        _set_blob(backend.store, "ix_v", bytes(tampered))
        with pytest.raises(DecryptionError) as caught:
            backend.db.execute(f"SELECT k FROM {enc} WHERE v > ?", (3,))  # noqa: S608
        assert str(caught.value) == str(DecryptionError())
    # A genuine blob of another column under the same key: refused by its header.
    _set_blob(backend.store, "ix_v", _blob(backend.store, "ix_d"))
    with pytest.raises(QueryError, match="another table, column or key"):
        backend.db.execute(f"SELECT k FROM {enc} WHERE v > ?", (3,))  # noqa: S608
    _set_blob(backend.store, "ix_v", blob)
    assert len(backend.rows(f"SELECT k FROM {enc} WHERE v > ?", (3,))) > 0  # noqa: S608


def test_host_returning_extra_rows_cannot_add_them(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, plain = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    everything = np.arange(0, len(ROWS_FIXED) + 5, dtype=np.int64)
    monkeypatch.setattr(_Select, "_use_index", lambda self, conn: (everything, int(everything[-1])))
    sql = "SELECT k FROM {t} WHERE v = ?"
    assert backend.rows(sql.format(t=enc), (5,)) == backend.rows(sql.format(t=plain), (5,))


def test_alter_column_drops_its_indexes(backend: Backend) -> None:
    enc, plain = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    backend.db.execute(f"CREATE INDEX ix_v2 ON {enc} (v)")
    backend.db.execute(f"CREATE INDEX ix_w ON {enc} (w)")
    cek = backend.client.default_cek_name
    backend.db.execute(
        f"ALTER TABLE {enc} ALTER COLUMN v int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = {cek}, "
        "ENCRYPTION_TYPE = Deterministic, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')"
    )
    table = _catalog(backend.store)
    with backend.store.engine.connect() as conn:
        left = {r[0] for r in conn.execute(sa.select(table.c.index_name)).all()}
    assert left == {"ix_w"}
    sql = "SELECT k FROM {t} WHERE v < ?"
    with index_calls() as calls:
        assert backend.rows(sql.format(t=enc), (3,)) == backend.rows(sql.format(t=plain), (3,))
    assert calls == []


def test_drop_index_and_errors(backend: Backend) -> None:
    enc, _ = backend.tables(ROWS_FIXED[:10])
    with pytest.raises(QueryError, match="no index"):
        backend.db.execute(f"DROP INDEX ix_v ON {enc}")
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    with pytest.raises(QueryError, match="exists already"):
        backend.db.execute(f"CREATE INDEX ix_v ON {enc} (w)")
    with pytest.raises(QueryError, match="not encrypted"):
        backend.db.execute(f"CREATE INDEX ix_k ON {enc} (k)")
    backend.db.execute(f"DROP INDEX ix_v ON {enc}")
    with index_calls() as calls:
        backend.db.execute(f"SELECT k FROM {enc} WHERE v > ?", (1,))  # noqa: S608
    assert calls == []


def test_index_of_an_empty_table_then_imports(backend: Backend) -> None:
    enc, plain = backend.tables([])
    assert backend.db.execute(f"CREATE INDEX ix_w ON {enc} (w)").rowcount == 0
    backend.append((enc, plain), ROWS_FIXED)
    sql = "SELECT k FROM {t} WHERE w BETWEEN ? AND ?"
    with index_calls() as calls:
        assert backend.rows(sql.format(t=enc), ("a", "w2")) == backend.rows(
            sql.format(t=plain), ("a", "w2")
        )
    assert calls == [0]


# -- the sealed format ------------------------------------------------------------------------


def test_seal_round_trip_and_header() -> None:
    cipher = CellCipher(ColumnEncryptionKey.generate())
    binding = ColumnBinding(
        name="w",
        sql_type="nvarchar(10)",
        encrypted=True,
        encryption="randomized",
        key_id=0,
        key_md_version=b"12345678",
    )
    builder = IndexBuilder(table="People", binding=binding)
    values = ["b", None, "a", "é", "b"]
    null = np.asarray([v is None for v in values])
    builder.add(np.asarray([3, 4, 7, 9, 11], dtype=np.int64), ColumnData(values, null, False))
    blob, rows, max_row_id = builder.seal(cipher)
    assert (rows, max_row_id) == (4, 11)
    opened = unseal(cipher, blob)
    assert (opened.table, opened.column, opened.sql_type) == ("people", "w", "nvarchar(10)")
    assert opened.key_md_version == b"12345678"
    assert list(opened.values) == ["a", "b", "b", "é"]
    assert opened.row_ids.tolist() == [7, 3, 11, 9]
    with pytest.raises(DecryptionError):
        unseal(CellCipher(ColumnEncryptionKey.generate()), blob)
    # A genuine cell of the column (same key) is not an index.
    with pytest.raises(DecryptionError):
        unseal(cipher, cipher.encrypt("CRIX".encode("utf-16-le")))


def test_chunks_sample_and_plaintext_order(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, plain = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    monkeypatch.setattr("cleanroom.sql._select._ID_CHUNK", 3)  # candidates read 3 ids at a time
    queries = [
        ("SELECT k, w FROM {t} WHERE v >= ? AND v < ?", (3, 9)),
        ("SELECT COUNT(*) FROM {t} TABLESAMPLE (50 PERCENT) REPEATABLE (7) WHERE v > ?", (10,)),
        ("SELECT TOP (4) k FROM {t} WHERE v IN (?, ?, ?) ORDER BY v DESC", (5, 7, 99)),
    ]
    with index_calls() as calls:
        for sql, params in queries:
            got = backend.db.execute(sql.format(t=enc), params).fetchall()
            assert got == backend.db.execute(sql.format(t=plain), params).fetchall()
    assert len(calls) == len(queries)
    # A plaintext ORDER BY is done by the database over a full scan: no index.
    sql = "SELECT k FROM {t} WHERE v < ? ORDER BY k DESC"
    with index_calls() as calls:
        got = backend.db.execute(sql.format(t=enc), (3,)).fetchall()
    assert got == backend.db.execute(sql.format(t=plain), (3,)).fetchall()
    assert calls == []


@pytest.mark.parametrize(
    ("sql", "plan"),
    [
        ("CREATE INDEX ix_Age ON dbo.People (Age)", CreateIndexPlan("ix_age", "People", "age")),
        (
            "create nonclustered index [ix] on [People]([age] ASC);",
            CreateIndexPlan("ix", "People", "age"),
        ),
        ("DROP INDEX Ix ON People", DropIndexPlan("ix", "People")),
    ],
)
def test_parse_index_statements(sql: str, plan: object) -> None:
    assert parse(sql) == plan


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX ix ON t (a, b)",
        "CREATE UNIQUE INDEX ix ON t (a)",
        "CREATE INDEX ix ON t (a DESC)",
        "CREATE INDEX ix ON t (a) INCLUDE (b)",
        "DROP INDEX t.ix",
    ],
)
def test_unsupported_index_forms(sql: str) -> None:
    with pytest.raises(QueryError, match=r"INDEX|statement"):
        parse(sql)


def test_index_of_a_dropped_dataset_is_not_used(backend: Backend) -> None:
    enc, _ = backend.tables(ROWS_FIXED)
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")
    backend.store.drop_dataset(backend.store.dataset("p", enc))
    backend.client.create_dataset(DatasetSchema(table=enc, columns=ENC_COLUMNS))
    fresh = [{"k": i, "v": i % 7, "w": "x", "d": 0} for i in range(30)]
    backend.client.import_records(fresh, dataset=enc)
    with index_calls() as calls:
        got = backend.rows(f"SELECT k FROM {enc} WHERE v = ?", (3,))  # noqa: S608
    assert got == sorted([(r["k"],) for r in fresh if r["v"] == 3], key=repr)
    assert calls == []
    backend.db.execute(f"CREATE INDEX ix_v ON {enc} (v)")  # the stale one is gone
    with index_calls() as calls:
        assert backend.rows(f"SELECT k FROM {enc} WHERE v = ?", (3,)) == got  # noqa: S608
    assert calls == [len(got)]
