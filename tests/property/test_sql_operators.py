"""Hypothesis: random rows and random predicates give the same answer encrypted and plaintext.

Every example loads its rows into an encrypted table (randomized and deterministic columns)
and into a plaintext table, then runs one generated ``SELECT`` (predicate tree of every
operator, optional ``ORDER BY`` / ``TOP`` or aggregates) on both through the engine and the
client, on SQLite and on PostgreSQL. The plaintext table is answered by the database; the
encrypted one by the database (ciphertext equality) and the enclave, then again with a
sealed enclave index on every encrypted column.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import AttestationSettings, Connection, QueryEngine, connect, simulated_enclave
from cleanroom.store import ColumnSpec, DatasetSchema, open_store
from cleanroom.tee import SimulatedLauncher

COLUMNS = {
    # Small domains, so that generated values often equal stored ones (edges of < and <=).
    "n": ("int", "randomized", st.integers(-3, 3)),
    "d": ("int", "deterministic", st.integers(0, 3)),
    "s": ("nvarchar(8)", "randomized", st.text("abA%_", max_size=3)),
    "f": ("float", "randomized", st.sampled_from([-1.5, 0.0, 0.25, 2.0])),
    "t": ("date", "randomized", st.dates(dt.date(1990, 1, 1), dt.date(1990, 1, 5))),
}
SPECS = tuple(ColumnSpec(n, t, encryption=e) for n, (t, e, _) in COLUMNS.items())  # type: ignore[arg-type]


def sometimes_null(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``, or NULL one time in eight."""
    return st.integers(0, 7).flatmap(lambda i: st.none() if i == 0 else strategy)


ROW = st.fixed_dictionaries({n: sometimes_null(s) for n, (_, _, s) in COLUMNS.items()})
_counter = itertools.count()


def value_of(column: str) -> st.SearchStrategy[Any]:
    strategy = COLUMNS[column][2]
    return sometimes_null(strategy)


@st.composite
def leaf(draw: st.DrawFn) -> tuple[str, list[Any]]:
    column = draw(st.sampled_from(sorted(COLUMNS)))
    kinds = ["cmp", "between", "in", "null"] + (["like"] if column == "s" else [])
    kind = draw(st.sampled_from(kinds))
    neg = "NOT " if draw(st.booleans()) else ""
    if kind == "cmp":
        if COLUMNS[column][1] == "deterministic":
            op = draw(st.sampled_from(["=", "<>", "<", ">="]))
        else:
            op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        return f"{column} {op} ?", [draw(value_of(column))]
    if kind == "between":
        return f"{column} {neg}BETWEEN ? AND ?", [draw(value_of(column)), draw(value_of(column))]
    if kind == "in":
        values = draw(st.lists(value_of(column), min_size=1, max_size=3))
        return f"{column} {neg}IN ({', '.join('?' * len(values))})", values
    if kind == "null":
        return f"{column} IS {neg}NULL", []
    return f"s {neg}LIKE ?", [draw(st.text("abA%_[]^", max_size=4))]


def predicate() -> st.SearchStrategy[tuple[str, list[Any]]]:
    def combine(children: st.SearchStrategy[tuple[str, list[Any]]]) -> Any:
        pair = st.tuples(children, children, st.sampled_from(["AND", "OR"]))
        return st.one_of(
            pair.map(lambda p: (f"({p[0][0]} {p[2]} {p[1][0]})", p[0][1] + p[1][1])),
            children.map(lambda c: (f"NOT ({c[0]})", c[1])),
        )

    return st.recursive(leaf(), combine, max_leaves=4)


@st.composite
def query(draw: st.DrawFn) -> tuple[str, list[Any]]:
    where, params = draw(predicate())
    if draw(st.integers(0, 4)) == 0:
        column = draw(st.sampled_from(sorted(COLUMNS)))
        # Generated SQL over fixed identifiers; every value is a parameter.
        items = f"COUNT(*), COUNT({column}), MIN({column}), MAX({column})"
        return f"SELECT {items} FROM {{t}} WHERE {where}", params  # noqa: S608
    order = ""
    top = ""
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=2, unique=True))
        order = " ORDER BY " + ", ".join(
            f"{k} {draw(st.sampled_from(['ASC', 'DESC']))}" for k in keys
        )
        if draw(st.booleans()):
            top = f"TOP ({draw(st.integers(0, 5))}) "
    return f"SELECT {top}* FROM {{t}} WHERE {where}{order}", params  # noqa: S608


@pytest.fixture(scope="module")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True)


def _setup(url: str, root: Path, launcher: SimulatedLauncher) -> tuple[PartyClient, Connection]:
    store = open_store(url)
    key_store = LocalKeyStore(root)
    client = PartyClient(store, key_store, party="prop")
    client.create_keys()
    enclave, measurement = simulated_enclave(launcher)
    attestation = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    engine = QueryEngine(store, enclave=enclave, batch_size=7)
    return client, connect(engine, key_store, party="prop", attestation=attestation)


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, launcher: SimulatedLauncher
) -> Iterator[dict[str, tuple[PartyClient, Connection]]]:
    root = tmp_path_factory.mktemp("sqlprop")
    out = {"sqlite": _setup(f"sqlite:///{root / 'store.db'}", root / "sqlite", launcher)}
    base = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    schema = f"cr_sqlprop_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base) if base else None
    if admin is not None:
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
            out["postgresql"] = _setup(
                url.render_as_string(hide_password=False), root / "pg", launcher
            )
        except sa.exc.OperationalError:
            admin.dispose()
            admin = None
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL is unreachable under CI")
    yield out
    for client, _ in out.values():
        client.store.close()
    if admin is not None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(ROW, max_size=12), generated=query())
def test_encrypted_equals_plaintext(
    backends: dict[str, tuple[PartyClient, Connection]],
    backend: str,
    rows: list[dict[str, Any]],
    generated: tuple[str, list[Any]],
) -> None:
    if backend not in backends:
        pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    client, connection = backends[backend]
    number = next(_counter)
    encrypted = DatasetSchema(table=f"E{number}", columns=SPECS).with_default_cek(
        client.default_cek_name
    )
    plain = DatasetSchema(table=f"P{number}", columns=encrypted.plaintext().columns)
    for schema in (encrypted, plain):
        info = client.create_dataset(schema)
        client.import_records(rows, dataset=schema.table)
    sql, params = generated
    try:
        answer = connection.execute(sql.format(t=encrypted.table), params).fetchall()
        expected = connection.execute(sql.format(t=plain.table), params).fetchall()
        assert answer == expected, sql
        event(f"rows returned: {'some' if expected else 'none'}")
        # The same query with a sealed enclave index on every encrypted column.
        for column in COLUMNS:
            connection.execute(f"CREATE INDEX ix_{column} ON {encrypted.table} ({column})")
        indexed = connection.execute(sql.format(t=encrypted.table), params).fetchall()
        assert indexed == expected, sql
    finally:
        for schema in (encrypted, plain):
            info = client.dataset(schema.table)
            client.store.drop_dataset(info)
