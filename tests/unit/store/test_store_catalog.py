import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cleanroom.errors import ConfigurationError, SchemaError, StorageError
from cleanroom.store import (
    ColumnEncryptionKeyValue,
    ColumnMasterKeyInfo,
    DatasetSchema,
    Store,
    open_store,
    storage_errors,
    utc_now,
)

SCHEMA = DatasetSchema.from_json(
    """{"table": "Visits", "label": "code", "columns": [
        {"name": "code", "type": "int", "encryption": "deterministic", "cek": "CEK_a"},
        {"name": "note", "type": "nvarchar(50)", "cek": "CEK_a"},
        {"name": "weight", "type": "int", "encrypted": false}
    ]}"""
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        opened.add_column_master_key(
            ColumnMasterKeyInfo("CMK_a", "TEST_PROVIDER", "cmk_a", True, b"sig")
        )
        opened.add_column_master_key(ColumnMasterKeyInfo("CMK_a2", "TEST_PROVIDER", "cmk_a2"))
        opened.add_column_encryption_key(
            "CEK_a", [ColumnEncryptionKeyValue("CMK_a", b"\x01wrapped-by-a")]
        )
        yield opened


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    open_store(f"sqlite:///{path}").close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_catalog_records_cmk_and_cek_metadata(store: Store) -> None:
    cmk = store.column_master_key("CMK_a")
    assert (cmk.key_store_provider_name, cmk.key_path) == ("TEST_PROVIDER", "cmk_a")
    assert cmk.allow_enclave_computations
    assert cmk.signature == b"sig"
    assert store.column_master_key_names() == ["CMK_a", "CMK_a2"]
    cek = store.column_encryption_key("CEK_a")
    assert [v.column_master_key_name for v in cek.values] == ["CMK_a"]
    assert cek.values[0].encryption_algorithm_name == "RSA_OAEP"
    assert "wrapped-by-a" not in repr(cek)  # reprs give sizes, not blobs


def test_a_cek_carries_at_most_two_values_and_keeps_its_last(store: Store) -> None:
    store.add_column_encryption_key_value("CEK_a", ColumnEncryptionKeyValue("CMK_a2", b"v2"))
    assert len(store.column_encryption_key("CEK_a").values) == 2
    with pytest.raises(StorageError, match="two values"):
        store.add_column_encryption_key_value("CEK_a", ColumnEncryptionKeyValue("CMK_a", b"v3"))
    store.drop_column_encryption_key_value("CEK_a", "CMK_a")
    assert [v.column_master_key_name for v in store.column_encryption_key("CEK_a").values] == [
        "CMK_a2"
    ]
    with pytest.raises(StorageError, match="last value"):
        store.drop_column_encryption_key_value("CEK_a", "CMK_a2")


def test_duplicates_and_dangling_references_are_refused(store: Store) -> None:
    with pytest.raises(StorageError, match="already exists"):
        store.add_column_master_key(ColumnMasterKeyInfo("CMK_a", "P", "p"))
    with pytest.raises(StorageError, match="no column master key"):
        store.add_column_encryption_key("CEK_b", [ColumnEncryptionKeyValue("CMK_zz", b"x")])
    with pytest.raises(StorageError, match="no column encryption key 'CEK_b'"):
        store.column_encryption_key("CEK_b")  # the failed add left nothing behind
    missing_cek = SCHEMA.with_default_cek("CEK_missing")
    bad = DatasetSchema.from_json(
        '{"table": "T", "columns": [{"name": "a", "type": "int", "cek": "CEK_missing"}]}'
    )
    with pytest.raises(StorageError, match="no column encryption key"):
        store.create_dataset("hospital_a", bad)
    assert store.datasets() == []
    assert missing_cek.column("code").cek == "CEK_a"


def test_dataset_registers_encrypted_columns_like_sys_columns(store: Store) -> None:
    info = store.create_dataset("hospital_a", SCHEMA)
    assert info.table_name == "ds_hospital_a_visits"
    assert store.dataset("hospital_a", "Visits") == info
    columns = {c.column_name: c for c in store.encrypted_columns(info)}
    assert set(columns) == {"code", "note"}
    assert columns["code"].encryption_type == "deterministic"
    assert columns["note"].encryption_type == "randomized"
    assert columns["note"].sql_type == "nvarchar(50)"
    assert columns["note"].encryption_algorithm_name == "AEAD_AES_256_CBC_HMAC_SHA256"
    assert columns["note"].normalization_rule_version == 1
    with pytest.raises(StorageError, match="already has"):
        store.create_dataset("hospital_a", SCHEMA)
    inspector = sa.inspect(store.engine)
    types = {c["name"]: c["type"] for c in inspector.get_columns("ds_hospital_a_visits")}
    assert isinstance(types["code"], sa.LargeBinary)  # a BLOB for every encrypted column
    assert isinstance(types["weight"], sa.Integer)


def test_load_is_one_transaction(store: Store) -> None:
    info = store.create_dataset("hospital_a", SCHEMA)

    def batches() -> Iterator[dict[str, list[object]]]:
        for start in range(0, 3000, 1000):
            yield {
                "code": [b"c"] * 1000,
                "note": [None] * 1000,
                "weight": list(range(start, start + 1000)),
            }
        raise RuntimeError("the encryptor failed half way")

    with pytest.raises(RuntimeError):
        store.load(info, batches())
    assert store.count(info) == 0
    # A database-level refusal (a NULL in a NOT NULL column) in the last batch, too.
    strict = DatasetSchema.from_json(
        '{"table": "Strict", "columns": [{"name": "v", "type": "int", "encrypted": false,'
        ' "nullable": false}]}'
    )
    strict_info = store.create_dataset("hospital_a", strict)
    with pytest.raises(StorageError) as refused:
        store.load(strict_info, [{"v": list(range(5000))}, {"v": [1, None]}])
    assert "5000" not in str(refused.value)
    assert store.count(strict_info) == 0
    assert store.load(strict_info, [{"v": [7, 8]}]) == 2
    assert [r["v"] for r in store.rows(strict_info)] == [7, 8]


def test_batches_must_match_the_schema(store: Store) -> None:
    info = store.create_dataset("hospital_a", SCHEMA)
    with pytest.raises(SchemaError, match="missing"):
        store.load(info, [{"code": [b"x"]}])
    with pytest.raises(SchemaError, match="lengths"):
        store.load(info, [{"code": [b"x"], "note": [], "weight": [1]}])


def test_rows_filter_by_bytes_and_refuse_randomized_equality(store: Store) -> None:
    info = store.create_dataset("hospital_a", SCHEMA)
    store.load(
        info,
        [
            {
                "code": [b"A", b"B", b"A", None],
                "note": [b"n1", None, b"n3", b"n4"],
                "weight": [1, 2, 3, 4],
            }
        ],
    )
    assert [r["weight"] for r in store.rows(info, where={"code": b"A"})] == [1, 3]
    assert [r["weight"] for r in store.rows(info, where={"code": None})] == [4]
    assert [r["weight"] for r in store.rows(info, limit=2, offset=1)] == [2, 3]
    assert store.rows(info, limit=1)[0]["note"] == b"n1"  # NULL stays NULL, cells stay bytes
    with pytest.raises(StorageError, match="randomized"):
        store.rows(info, where={"note": b"n1"})


def test_drop_dataset_removes_table_and_catalog(store: Store) -> None:
    info = store.create_dataset("hospital_a", SCHEMA)
    store.drop_dataset(info)
    assert store.datasets("hospital_a") == []
    assert store.encrypted_columns(info) == []
    assert not sa.inspect(store.engine).has_table(info.table_name)


def test_reserved_and_overlong_names_are_refused(store: Store) -> None:
    reserved = DatasetSchema.from_json(
        '{"table": "T", "columns": [{"name": "row_id", "type": "int", "encrypted": false}]}'
    )
    with pytest.raises(SchemaError, match="reserved"):
        store.create_dataset("hospital_a", reserved)
    with pytest.raises(SchemaError, match="too long"):
        Store.table_name_for("p" * 40, "d" * 40)
    with pytest.raises(SchemaError, match="party name"):
        Store.table_name_for("bad party", "T")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "not a url",
        "sqlite:////nonexistent/dir/x.db",
    ],
)
def test_bad_urls_fail_at_open(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_writing_commits_or_rolls_back_and_reading_sees_it(store: Store) -> None:
    with store.writing() as conn:
        conn.exec_driver_sql("CREATE TABLE side (v INTEGER)")
        conn.exec_driver_sql("INSERT INTO side VALUES (1)")

    def fail_half_way() -> None:
        with store.writing() as conn:
            conn.exec_driver_sql("INSERT INTO side VALUES (2)")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_half_way()
    with store.reading() as conn:
        assert conn.exec_driver_sql("SELECT v FROM side").scalars().all() == [1]


def test_write_maps_database_errors_without_their_values(store: Store) -> None:
    with store.write("making a side table") as conn:
        conn.exec_driver_sql("CREATE TABLE side (v TEXT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO side VALUES ('first')")
    secret = "s3cret-plaintext-value"

    def insert_twice() -> None:
        with store.write("adding a side row") as conn:
            conn.execute(sa.text("INSERT INTO side VALUES (:v)"), {"v": secret})
            conn.execute(sa.text("INSERT INTO side VALUES (:v)"), {"v": secret})

    with pytest.raises(StorageError) as caught:
        insert_twice()
    assert str(caught.value) == "adding a side row failed (IntegrityError)"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert secret not in repr(caught.value)
    with store.read("reading the side table") as conn:  # the failed write rolled back
        assert conn.exec_driver_sql("SELECT v FROM side").scalars().all() == ["first"]

    def read_absent() -> None:
        with store.read("reading a missing table") as conn:
            conn.exec_driver_sql("SELECT * FROM absent")

    with pytest.raises(
        StorageError, match=r"^reading a missing table failed \(OperationalError\)$"
    ):
        read_absent()


def test_write_lets_other_errors_through_and_rolls_back(store: Store) -> None:
    with store.write("making a side table") as conn:
        conn.exec_driver_sql("CREATE TABLE side (v INTEGER)")

    def refuse_half_way() -> None:
        with store.write("adding a side row") as conn:
            conn.exec_driver_sql("INSERT INTO side VALUES (1)")
            raise StorageError("refused by the caller")

    with pytest.raises(StorageError, match="refused by the caller"):
        refuse_half_way()
    with store.read("counting") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM side").scalar() == 0


def test_storage_errors_guards_any_block() -> None:
    def fail(error: Exception) -> None:
        with storage_errors("probing"):
            raise error

    with pytest.raises(StorageError, match=r"^probing failed \(ArgumentError\)$") as caught:
        fail(sa.exc.ArgumentError("value 'secret' is bad"))
    assert "secret" not in str(caught.value)
    with pytest.raises(KeyError):
        fail(KeyError("not a database error"))


def test_utc_now_is_aware_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    now = utc_now()
    assert now.tzinfo is dt.UTC
    assert before <= now <= dt.datetime.now(dt.UTC)
