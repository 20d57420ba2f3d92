"""Hypothesis round-trips of every supported SQL type through the encrypted store.

Each example is one row holding a value (or NULL) of every type; it is imported through the
party's client (validated, normalized, encrypted), read back and decrypted, on SQLite and
on PostgreSQL. The row must come back as exactly what normalization rule 1 preserves.
"""

import datetime as dt
import decimal
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.client import PartyClient
from cleanroom.crypto.normalize import denormalize, normalize
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import SUPPORTED_TYPES, ColumnSpec, DatasetSchema, open_store

D = decimal.Decimal


def _text(limit: int, *, wide: bool) -> st.SearchStrategy[str]:
    def fits(s: str) -> bool:
        return len(s.encode("utf-16-le")) // 2 <= limit if wide else len(s.encode()) <= limit

    return st.text(st.characters(codec="utf-8"), max_size=limit).filter(fits)


_ZONES = st.integers(-840, 840).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))

TYPES: dict[str, st.SearchStrategy[Any]] = {
    "bit": st.booleans(),
    "tinyint": st.integers(0, 255),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "int": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "real": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "decimal(10,2)": st.decimals(D("-99999999.99"), D("99999999.99"), places=2),
    "decimal(38,10)": st.decimals(-(D(10) ** 28) + 1, D(10) ** 28 - 1, places=10),
    "numeric(5,0)": st.integers(-99999, 99999).map(D),
    "money": st.decimals(D("-922337203685477.5808"), D("922337203685477.5807"), places=4),
    "smallmoney": st.decimals(D("-214748.3648"), D("214748.3647"), places=4),
    "date": st.dates(),
    "time(7)": st.times(),
    "time(0)": st.times(),
    "datetime2(7)": st.datetimes(),
    "datetime2(3)": st.datetimes(),
    "datetimeoffset(7)": st.datetimes(
        min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=_ZONES
    ),
    "datetime": st.datetimes(
        min_value=dt.datetime(1753, 1, 1), max_value=dt.datetime(9999, 12, 30)
    ),
    "smalldatetime": st.datetimes(
        min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2079, 6, 5)
    ),
    "uniqueidentifier": st.uuids(),
    "binary(8)": st.binary(max_size=8),
    "varbinary(50)": st.binary(max_size=50),
    "varbinary(max)": st.binary(max_size=300),
    "char(10)": _text(10, wide=False),
    "varchar(100)": _text(100, wide=False),
    "varchar(max)": _text(200, wide=False),
    "nchar(10)": _text(10, wide=True),
    "nvarchar(100)": _text(100, wide=True),
    "nvarchar(max)": _text(200, wide=True),
}

COLUMNS = tuple(
    ColumnSpec(
        name=f"c{i}",
        sql_type=sql_type,
        encryption="deterministic" if i % 2 == 0 else "randomized",
    )
    for i, sql_type in enumerate(TYPES)
)
SCHEMA = DatasetSchema(table="AllTypes", columns=COLUMNS)
STRATEGIES = {
    spec.name: st.none() | strategy for spec, strategy in zip(COLUMNS, TYPES.values(), strict=True)
}


def test_every_supported_type_is_covered() -> None:
    assert {c.column_type.name for c in COLUMNS} == SUPPORTED_TYPES


def expected(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for spec in COLUMNS:
        value = record[spec.name]
        sql_type = spec.column_type.sql_type
        out[spec.name] = (
            None
            if value is None
            else denormalize(normalize(spec.coerce(value), sql_type), sql_type)
        )
    return out


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PartyClient]]:
    root = tmp_path_factory.mktemp("roundtrip")
    urls = {"sqlite": f"sqlite:///{root / 'store.db'}"}
    base = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    admin = sa.create_engine(base) if base else None
    schema = f"cr_prop_{uuid.uuid4().hex[:12]}"
    if admin is not None:
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            scoped = sa.engine.make_url(base).update_query_dict(
                {"options": f"-csearch_path={schema}"}
            )
            urls["postgresql"] = scoped.render_as_string(hide_password=False)
        except sa.exc.OperationalError:
            admin.dispose()
            admin = None
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL is unreachable under CI")
    clients = {}
    for name, url in urls.items():
        client = PartyClient(open_store(url), LocalKeyStore(root / name), party="prop")
        client.create_keys()
        client.create_dataset(SCHEMA)
        clients[name] = client
    yield clients
    for client in clients.values():
        client.store.close()
    if admin is not None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=st.fixed_dictionaries(STRATEGIES))
def test_round_trip(backends: dict[str, PartyClient], backend: str, record: dict[str, Any]) -> None:
    if backend not in backends:
        pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    client = backends[backend]
    info = client.dataset("AllTypes")
    before = client.store.count(info)
    assert client.import_records([record], dataset="AllTypes") == 1
    back = client.read("AllTypes", offset=before)
    assert back == [expected(record)]
    # Deterministic columns find the row by encrypted equality.
    for spec in COLUMNS:
        if spec.encryption == "deterministic" and record[spec.name] is not None:
            found = client.read("AllTypes", where={spec.name: record[spec.name]})
            assert expected(record) in found
            break
