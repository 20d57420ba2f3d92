"""The client: describe, attest, package, encrypt parameters, decrypt results (SQLite)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cleanroom.attestation import AttestationPolicy
from cleanroom.errors import EvidenceError, KeyWrapError, PolicyViolation, QueryError, SchemaError
from cleanroom.sql import AttestationSettings, QueryEngine, connect
from cleanroom.sql import package as pkg

from .conftest import ROWS, Env  # type: ignore[import-not-found]


def names(rows: list[tuple[Any, ...]]) -> list[Any]:
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        ("SELECT name FROM People WHERE age > ?", (28,), ["alice", "bob", "Bobby"]),
        (
            "SELECT name FROM People WHERE age >= @a AND age < @b",
            {"a": 25, "@B": 40},
            ["alice", None],
        ),
        ("SELECT name FROM People WHERE age <> ?", (40,), ["alice", None]),
        ("SELECT name FROM People WHERE age BETWEEN ? AND ?", (26, 40), ["alice", "bob", "Bobby"]),
        ("SELECT name FROM People WHERE age NOT BETWEEN ? AND ?", (26, 40), [None]),
        ("SELECT name FROM People WHERE age IN (?, ?)", (25, 30), ["alice", None]),
        ("SELECT name FROM People WHERE name LIKE ?", ("%ob%",), ["bob", "Bobby"]),
        ("SELECT name FROM People WHERE name NOT LIKE ?", ("b%",), ["alice", "carol", "Bobby"]),
        ("SELECT name FROM People WHERE site = ?", ("x",), ["alice", "carol"]),
        ("SELECT name FROM People WHERE site IN (?) OR age = ?", ("y", 25), ["bob", None, "Bobby"]),
        (
            "SELECT name FROM People WHERE NOT (age = ?) OR visits IN (3, 5)",
            (40,),
            ["alice", "carol", None, "Bobby"],
        ),
        ("SELECT name FROM People WHERE born < ?", (dt.date(1985, 1, 1),), ["carol", "Bobby"]),
        ("SELECT name FROM People WHERE score > ? AND visits > 1", (1.0,), ["bob", "Bobby"]),
        ("SELECT name FROM People WHERE age IS NULL OR name IS NULL", (), ["carol", None]),
        ("SELECT name FROM People WHERE age > ?", ("28",), ["alice", "bob", "Bobby"]),
        ("SELECT name FROM People WHERE age > ?", (None,), []),
        (
            "SELECT name FROM People ORDER BY age DESC, name",
            (),
            ["Bobby", "bob", "alice", None, "carol"],
        ),
        ("SELECT name FROM People ORDER BY born", (), ["bob", "Bobby", "carol", "alice", None]),
        (
            "SELECT TOP (2) name FROM People WHERE age > ? ORDER BY score DESC",
            (0,),
            ["Bobby", "bob"],
        ),
        (
            "SELECT name FROM People ORDER BY visits DESC",
            (),
            ["Bobby", "carol", "bob", "alice", None],
        ),
    ],
)
def test_operators(shared_env: Env, sql: str, params: Any, expected: list[Any]) -> None:
    with shared_env.connect() as connection:
        assert names(connection.execute(sql, params).fetchall()) == expected


def test_aggregates_come_back_encrypted_and_decrypt(env: Env) -> None:
    sql = (
        "SELECT COUNT(*), COUNT(age), MIN(age), MAX(name), MIN(born), MAX(visits) "
        "FROM People WHERE score > ?"
    )
    raw = env.engine.execute  # the host's view: MIN/MAX are cells
    with env.connect() as connection:
        cursor = connection.execute(sql, (0.0,))
        assert cursor.fetchall() == [(4, 4, 25, "bob", dt.date(1970, 1, 1), 5)]
        assert [d[0] for d in cursor.description or ()] == [
            "count(*)",
            "count(age)",
            "min(age)",
            "max(name)",
            "min(born)",
            "max(visits)",
        ]
    seen: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = raw(*args, **kwargs)
        seen.append(result)
        return result

    env.engine.execute = spy
    with env.connect() as connection:
        connection.execute(sql, (0.0,))
    row = seen[0].rows[0]
    assert isinstance(row[2], bytes)
    assert row[2][0] == 1
    assert len(row[2]) == 65
    assert isinstance(row[3], bytes)
    assert row[5] == 5


def test_tablesample_is_seeded_and_repeatable(env: Env) -> None:
    extra = [{**ROWS[0], "visits": i} for i in range(300)]
    env.client.import_records(extra, dataset="People")
    with env.connect() as connection:
        sql = "SELECT visits FROM People TABLESAMPLE (30 PERCENT) REPEATABLE (11) WHERE age > ?"
        first = connection.execute(sql, (0,)).fetchall()
        assert first == connection.execute(sql, (0,)).fetchall()
        assert 40 < len(first) < 140
        other = connection.execute(sql.replace("(11)", "(12)"), (0,)).fetchall()
        assert other != first
        everything = connection.execute(
            "SELECT visits FROM People TABLESAMPLE (100 PERCENT)"
        ).fetchall()
        assert len(everything) == 305
        none = connection.execute("SELECT visits FROM People TABLESAMPLE (0 PERCENT)").fetchall()
        assert none == []


def test_statements_without_enclave_work_never_attest(env: Env) -> None:
    with env.connect(attestation=None) as connection:
        rows = connection.execute("SELECT name FROM People WHERE site = ? AND visits < 3", ("x",))
        assert rows.fetchall() == [("alice",)]
        assert connection.claims is None
        with pytest.raises(QueryError, match="no attestation settings"):
            connection.execute("SELECT name FROM People WHERE age > ?", (1,))


def test_a_wrong_measurement_or_simulation_is_refused(env: Env) -> None:
    wrong = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({"00" * 48})
        ),
        trusted_roots=[env.launcher.root_certificate],
    )
    with env.connect(attestation=wrong) as connection, pytest.raises(PolicyViolation) as caught:
        connection.execute("SELECT name FROM People WHERE age > ?", (1,))
    assert caught.value.rule == "measurement"
    production = AttestationSettings(
        policy=AttestationPolicy(
            allowed_tees=frozenset({"sev-snp"}), allowed_measurements=frozenset({env.measurement})
        ),
        trusted_roots=[env.launcher.root_certificate],
    )
    with env.connect(attestation=production) as connection, pytest.raises(PolicyViolation):
        connection.execute("SELECT name FROM People WHERE age > ?", (1,))


def test_evidence_for_another_key_is_refused(env: Env) -> None:
    honest = env.engine.attest

    def swap(parameters: bytes) -> Any:
        info = honest(parameters)
        other = pkg.eck3_blob(pkg.new_ecdh_key().public_key())
        return type(info)(info.session_id, info.evidence, info.runtime_data, other)

    env.engine.attest = swap
    with env.connect() as connection, pytest.raises(EvidenceError, match="ECDH"):
        connection.execute("SELECT name FROM People WHERE age > ?", (1,))


def test_the_host_cannot_replay_or_reuse_a_package(env: Env) -> None:
    captured: list[dict[str, Any]] = []
    honest = env.engine.execute

    def spy(statement: str, **kwargs: Any) -> Any:
        captured.append({"statement": statement, **kwargs})
        return honest(statement, **kwargs)

    env.engine.execute = spy
    with env.connect() as connection:
        connection.execute("SELECT name FROM People WHERE age > ?", (28,))
    call = captured[0]
    with pytest.raises(QueryError, match="replay"):
        honest(call["statement"], party="a", parameters=call["parameters"], package=call["package"])
    with pytest.raises(QueryError, match="another statement"):
        honest(
            "SELECT name FROM People WHERE age < ?",
            party="a",
            parameters=call["parameters"],
            package=call["package"],
        )
    with pytest.raises(QueryError, match="package"):
        honest(call["statement"], party="a", parameters=call["parameters"])


def test_keys_under_a_cmk_not_enabled_for_enclaves_never_leave(env: Env) -> None:
    env.client.create_keys(
        cmk_name="CMK_plain", cek_name="CEK_plain", allow_enclave_computations=False
    )
    from cleanroom.store import ColumnSpec, DatasetSchema

    env.client.create_dataset(
        DatasetSchema(table="Other", columns=(ColumnSpec("v", "int", cek="CEK_plain"),))
    )
    env.client.import_records([{"v": 1}, {"v": 2}], dataset="Other")
    sent: list[Any] = []
    honest = env.engine.execute

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs)
        return honest(*args, **kwargs)

    env.engine.execute = spy
    with env.connect() as connection:
        assert connection.execute("SELECT v FROM Other").fetchall() == [(1,), (2,)]
        with pytest.raises(KeyWrapError, match="not enabled for enclave"):
            connection.execute("SELECT v FROM Other WHERE v > ?", (1,))
    assert len(sent) == 1  # the refused statement never reached the host


def test_a_forged_cmk_signature_is_refused(env: Env) -> None:
    import sqlalchemy as sa

    with env.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE column_master_keys SET signature = :s"), {"s": b"\x00" * 256})
    with env.connect() as connection, pytest.raises(KeyWrapError, match="does not"):
        connection.execute("SELECT name FROM People WHERE age > ?", (1,))


@pytest.mark.parametrize(
    ("sql", "params", "error", "match"),
    [
        ("SELECT name FROM People WHERE age > 3", (), QueryError, "literal"),
        ("SELECT name FROM People WHERE nope > ?", (1,), QueryError, "no column 'nope'"),
        ("SELECT name FROM Nobody", (), QueryError, "no table"),
        ("SELECT name FROM People WHERE age > ?", (), QueryError, "missing"),
        ("SELECT name FROM People WHERE age > ?", (1, 2), QueryError, "takes 1"),
        ("SELECT name FROM People WHERE age > @a", (1,), QueryError, "mapping"),
        ("SELECT name FROM People WHERE age > ?", ("old",), SchemaError, "age"),
        ("SELECT name FROM People WHERE visits > ?", ("many",), SchemaError, "visits"),
        ("SELECT name FROM People WHERE age LIKE ?", ("1%",), QueryError, "character"),
    ],
)
def test_errors(shared_env: Env, sql: str, params: Any, error: type[Exception], match: str) -> None:
    with shared_env.connect() as connection, pytest.raises(error, match=match) as caught:
        connection.execute(sql, params)
    assert "alice" not in str(caught.value)
    assert "old" not in str(caught.value).replace("'old'", "")


def test_alter_column_encrypts_rotates_and_decrypts(env: Env) -> None:
    env.client.create_keys(cmk_name="CMK_two", cek_name="CEK_two")
    encrypt = (
        "ALTER TABLE People ALTER COLUMN visits int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = CEK_a, "
        "ENCRYPTION_TYPE = Randomized, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')"
    )
    with env.connect() as connection:
        assert connection.execute(encrypt).rowcount == 5
        rows = connection.execute(
            "SELECT visits FROM People WHERE visits >= ? ORDER BY visits", (2,)
        )
        assert rows.fetchall() == [(2,), (3,), (5,)]
        with pytest.raises(QueryError, match="literal"):
            connection.execute("SELECT visits FROM People WHERE visits > 1")
        rotate = (
            "ALTER TABLE People ALTER COLUMN age int ENCRYPTED WITH "
            "(COLUMN_ENCRYPTION_KEY = CEK_two, ENCRYPTION_TYPE = Deterministic)"
        )
        connection.execute(rotate)
        assert connection.execute("SELECT name FROM People WHERE age = ?", (40,)).fetchall() == [
            ("bob",),
            ("Bobby",),
        ]
        connection.execute("ALTER TABLE People ALTER COLUMN name nvarchar(40)")
        assert connection.execute("SELECT name FROM People WHERE name LIKE 'B%'").fetchall() == [
            ("Bobby",)
        ]
        with pytest.raises(QueryError, match="type"):
            connection.execute("ALTER TABLE People ALTER COLUMN score real")
        with pytest.raises(QueryError, match="already plaintext"):
            connection.execute("ALTER TABLE People ALTER COLUMN name nvarchar(40)")
    info = env.store.encrypted_columns(env.client.dataset("People"))
    assert {c.column_name: (c.encryption_type, c.column_encryption_key_name) for c in info} == {
        "age": ("deterministic", "CEK_two"),
        "site": ("deterministic", "CEK_a"),
        "score": ("randomized", "CEK_a"),
        "visits": ("randomized", "CEK_a"),
        "born": ("randomized", "CEK_a"),
    }


def test_a_second_engine_without_an_enclave_refuses_enclave_work(env: Env) -> None:
    bare = QueryEngine(env.store)
    connection = connect(bare, env.key_store, party="a", attestation=env.settings)
    with connection, pytest.raises(QueryError, match="no enclave"):
        connection.execute("SELECT name FROM People WHERE age > ?", (1,))


def test_a_forgotten_session_is_re_attested_once(env: Env) -> None:
    from cleanroom.sql import simulated_enclave

    small, measurement = simulated_enclave(env.launcher, max_sessions=1)
    engine = QueryEngine(env.store, enclave=small)
    settings = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[env.launcher.root_certificate],
    )
    first = connect(engine, env.key_store, party="a", attestation=settings)
    second = connect(engine, env.key_store, party="a", attestation=settings)
    sql = "SELECT name FROM People WHERE age > ?"
    assert names(first.execute(sql, (35,)).fetchall()) == ["bob", "Bobby"]
    before = first.claims
    assert names(second.execute(sql, (35,)).fetchall()) == ["bob", "Bobby"]  # evicts first
    assert names(first.execute(sql, (35,)).fetchall()) == ["bob", "Bobby"]
    assert first.claims is not before
