"""Reading a party's ciphertext in the enclave: digest, decryption, validation, guards."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.client import PartyClient
from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.data import generate_sites
from cleanroom.enclave import data as enclave_data
from cleanroom.enclave.data import (
    DIGEST_FORMAT,
    check_schema,
    dataset_digest,
    read_party_frame,
)
from cleanroom.errors import TrainingError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import (
    ROW_ID,
    ColumnSpec,
    DatasetInfo,
    DatasetSchema,
    Store,
    medical_record_schema,
    open_store,
)

PARTY = "hospital_a"
COLUMNS = ["age", "chestPain", "sex", "risk"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def loaded(store_url: str, tmp_path: Path) -> Iterator[tuple[Store, PartyClient, DatasetInfo]]:
    store = open_store(store_url)
    client = PartyClient(store, LocalKeyStore(tmp_path / "keys"), party=PARTY)
    client.create_keys()
    client.create_dataset()
    frame = next(iter(generate_sites(1, 53, seed=3).values()))
    client.import_dataframe(frame)
    try:
        yield store, client, client.dataset()
    finally:
        store.close()


def _keys(client: PartyClient) -> dict[str, ColumnEncryptionKey]:
    name = f"CEK_{PARTY}"
    return {name: ColumnEncryptionKey(client.column_encryption_key(name).secret_bytes())}


def test_decrypted_rows_equal_the_partys_own_reading(
    loaded: tuple[Store, PartyClient, DatasetInfo],
) -> None:
    store, client, info = loaded
    frame, digest = read_party_frame(store, info, ceks=_keys(client), columns=COLUMNS, batch_rows=7)
    own = client.read_dataframe()
    assert list(frame.columns) == COLUMNS
    assert len(frame) == digest.rows == 53
    for column in COLUMNS:
        expected = own[column].astype("float64").to_numpy()
        assert (frame[column].to_numpy(dtype="float64") == expected).all()
    # The digest covers the stored ciphertext only: the operator can recompute it, and
    # the batch size does not change it.
    assert dataset_digest(store, PARTY, info.name) == digest
    assert dataset_digest(store, PARTY, info.name, batch_rows=1000) == digest
    assert digest.to_dict()["format"] == DIGEST_FORMAT


def test_a_wrong_key_names_the_party_and_column(
    loaded: tuple[Store, PartyClient, DatasetInfo],
) -> None:
    store, _, info = loaded
    wrong = {f"CEK_{PARTY}": ColumnEncryptionKey.generate()}
    with pytest.raises(
        TrainingError, match=r"party 'hospital_a': column 'risk': .*does not decrypt"
    ):
        read_party_frame(store, info, ceks=wrong, columns=COLUMNS)
    with pytest.raises(TrainingError, match="no key was released"):
        read_party_frame(store, info, ceks={}, columns=COLUMNS)


def test_a_label_outside_the_schema_stops_the_job(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    client = PartyClient(store, LocalKeyStore(tmp_path / "keys"), party=PARTY)
    client.create_keys()
    base = medical_record_schema()
    loose = DatasetSchema(
        table=base.table,
        columns=tuple(
            dataclasses.replace(c, categories=None, minimum=None, maximum=None)
            if c.name == "risk"
            else c
            for c in base.columns
        ),
        label=base.label,
    )
    stored = client.create_dataset(loose)
    frame = next(iter(generate_sites(1, 20, seed=1).values())).copy()
    frame.loc[frame.index[7], "risk"] = 9  # a class the contract's schema does not have
    client.import_dataframe(frame)
    strict = DatasetInfo(stored.party, stored.table_name, base.with_default_cek(f"CEK_{PARTY}"))
    with pytest.raises(TrainingError) as stopped:
        read_party_frame(store, strict, ceks=_keys(client), columns=COLUMNS)
    message = str(stopped.value)
    assert "hospital_a" in message
    assert "'risk'" in message
    assert "categories" in message
    assert "9" not in message  # never the value
    with pytest.raises(TrainingError, match=r"column 'risk' differs from the schema"):
        check_schema(PARTY, stored.schema, base)
    store.close()


def test_schema_mismatches_name_party_and_column() -> None:
    base = medical_record_schema()
    fewer = DatasetSchema(table=base.table, columns=base.columns[:-1], label=base.label)
    with pytest.raises(TrainingError, match=r"hospital_b.*missing 'maxHeartRate'"):
        check_schema("hospital_b", fewer, base)
    check_schema("hospital_b", base.with_default_cek("CEK_hospital_b"), base)  # CEKs may differ


# -- the digest, against the framing written in the module docstring -----------------------


def _reference_digest(rows: Iterable[Sequence[Any]]) -> str:
    """``cleanroom-dataset-digest/1`` written out value by value, as documented."""
    hasher = hashlib.sha256()
    for row in rows:
        for value in row:
            if value is None:
                hasher.update(b"\x00")
            elif isinstance(value, bytes | bytearray | memoryview):
                hasher.update(b"\x01" + struct.pack(">I", len(value)) + bytes(value))
            else:
                text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")
                hasher.update(b"\x02" + struct.pack(">I", len(text)) + text)
    return hasher.hexdigest()


def _batch_digest(batch: list[tuple[Any, ...]]) -> str:
    hasher = hashlib.sha256()
    enclave_data._digest_batch(hasher, batch)
    return hasher.hexdigest()


def _cell(length: int, seed: int) -> bytes:
    return bytes((seed * 31 + i) % 256 for i in range(length))


def _rows(columns: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return list(zip(*columns, strict=True))


_A, _B, _C = (
    [_cell(65, i) for i in range(6)],
    [_cell(81, 100 + i) for i in range(6)],
    [_cell(7, 200 + i) for i in range(6)],
)
_N = [None] * 6
#: Batches every value of which is a cell or NULL, each column's cells of one length.
JOINABLE = {
    "no NULL": _rows([_A, _A[::-1]]),
    "NULLs in several columns": _rows([[None, *_A[1:]], [*_B[:3], None, *_B[4:]], _C]),
    "a column entirely NULL": _rows([_A, _N, _B]),
    "first and last cell NULL": _rows([[None, *_A[1:]], [*_B[:5], None]]),
    "mixed lengths across columns": _rows([_C, _A, _B, [b""] * 6]),
    "every value NULL": _rows([_N, _N, _N]),
    "one row": [(_A[0], None, _C[1])],
    "one column": _rows([[None, *_B[1:]]]),
    "mostly NULL": _rows([_N, [*_N[:5], _A[0]], _N, _B]),
}
#: Batches that take the value-by-value path.
OTHER = {
    "mixed lengths within a column": _rows([_A, [*_B[:5], _C[0]]]),
    "plaintext columns": _rows([_A, [1, None, "x", 2.5, True, "é"], _B]),
    "bytes-like values": _rows([[bytearray(_A[0]), *_A[1:]], _B]),
}


@pytest.mark.parametrize("segment_bytes", [1, 10**9], ids=["compacted", "segments"])
@pytest.mark.parametrize("name", list(JOINABLE))
def test_a_joined_batch_digests_as_documented(
    monkeypatch: pytest.MonkeyPatch, name: str, segment_bytes: int
) -> None:
    # Both ways of skipping NULL placeholders: one numpy compaction or one update per NULL.
    monkeypatch.setattr(enclave_data, "_SEGMENT_BYTES", segment_bytes)
    batch = JOINABLE[name]
    assert enclave_data._join_cells(batch, len(batch[0])) is not None
    assert enclave_data._join_cells(batch, len(batch[0]) + 1) is None  # not rows of that width
    assert _batch_digest(batch) == _reference_digest(batch)


@pytest.mark.parametrize("name", list(OTHER))
def test_other_batches_digest_as_documented(name: str) -> None:
    batch = OTHER[name]
    assert enclave_data._join_cells(batch, len(batch[0])) is None
    assert _batch_digest(batch) == _reference_digest(batch)


_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.integers(-(2**40), 2**40),
    st.text(max_size=5),
)


@st.composite
def _batches(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    rows = draw(st.integers(1, 12))
    width = draw(st.integers(1, 5))
    columns = []
    for _ in range(width):
        kind = draw(st.sampled_from(["cells", "cells", "any"]))
        if kind == "cells":  # one length, some NULLs: the joined path
            length = draw(st.integers(0, 40))
            cell = st.binary(min_size=length, max_size=length)
            value = st.one_of(st.none(), cell) if draw(st.booleans()) else cell
        else:
            value = _VALUES
        columns.append(draw(st.lists(value, min_size=rows, max_size=rows)))
    return _rows(columns)


@given(_batches())
@settings(max_examples=300)
def test_any_batch_digests_as_documented(batch: list[tuple[Any, ...]]) -> None:
    assert _batch_digest(batch) == _reference_digest(batch)


# -- the fast (joined) read against the value-by-value one, through a real store ------------

MIXED_TABLE = "Mixed"


def _mixed_schema(variant: str) -> DatasetSchema:
    sites = ("northwest", "southeast") if variant != "varying" else ("n", "southeast")
    columns = [
        ColumnSpec("label", "tinyint", categories=(0, 1, 2), nullable=False),
        ColumnSpec("score", "int", minimum=-1000, maximum=1000),
        ColumnSpec("empty", "smallint"),
        ColumnSpec("flag", "bit", encryption="deterministic"),
        ColumnSpec("site", "nvarchar(20)", encryption="deterministic", categories=sites),
        ColumnSpec("big", "bigint"),
    ]
    if variant == "plaintext":
        columns.append(ColumnSpec("visits", "int", encrypted=False))
    return DatasetSchema(table=MIXED_TABLE, columns=tuple(columns), label="label")


def _mixed_frame(schema: DatasetSchema, rows: int = 23) -> pd.DataFrame:
    sites = schema.columns[4].categories
    assert sites is not None
    values: dict[str, list[Any]] = {
        "label": [i % 3 for i in range(rows)],
        "score": [None if i in (0, 5, 6, rows - 1) else i * 7 - 30 for i in range(rows)],
        "empty": [None] * rows,
        "flag": [None if i % 4 == 1 else i % 2 for i in range(rows)],
        "site": [None if i in (3, rows - 1) else sites[i % 3 % 2] for i in range(rows)],
        # float32 holds these exactly (24-bit significand); the frame is float32.
        "big": [(-1) ** i * (2**40 + i * 2**20) for i in range(rows)],
        "visits": [None if i == 2 else i for i in range(rows)],
    }
    return pd.DataFrame({c.name: values[c.name] for c in schema.columns})


@pytest.fixture(params=["fixed", "varying", "plaintext"])
def mixed(
    request: pytest.FixtureRequest, store_url: str, tmp_path: Path
) -> Iterator[tuple[Store, PartyClient, DatasetInfo]]:
    store = open_store(store_url)
    client = PartyClient(store, LocalKeyStore(tmp_path / "keys"), party=PARTY)
    client.create_keys()
    schema = _mixed_schema(request.param)
    client.create_dataset(schema)
    client.import_dataframe(_mixed_frame(schema), dataset=MIXED_TABLE)
    try:
        yield store, client, client.dataset(MIXED_TABLE)
    finally:
        store.close()


def _stored_rows(store: Store, info: DatasetInfo) -> list[tuple[Any, ...]]:
    names = ", ".join(f'"{n}"' for n in info.schema.column_names)
    query = f'SELECT {names} FROM "{info.table_name}" ORDER BY "{ROW_ID}"'  # noqa: S608
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(query)]


def _plain(values: Iterable[Any]) -> list[Any]:
    return [None if pd.isna(v) else v for v in values]


@pytest.mark.parametrize("batch_rows", [1, 5, 1000])
def test_the_joined_read_equals_the_value_by_value_read(
    monkeypatch: pytest.MonkeyPatch,
    mixed: tuple[Store, PartyClient, DatasetInfo],
    batch_rows: int,
) -> None:
    store, client, info = mixed
    names = info.schema.column_names
    frame, digest = read_party_frame(
        store, info, ceks=_keys(client), columns=names, batch_rows=batch_rows
    )
    with monkeypatch.context() as patched:
        patched.setattr(enclave_data, "_join_cells", lambda *args, **kwargs: None)
        slow_frame, slow_digest = read_party_frame(
            store, info, ceks=_keys(client), columns=names, batch_rows=batch_rows
        )
    pd.testing.assert_frame_equal(frame, slow_frame)
    assert digest == slow_digest
    assert digest.rows == len(frame) == 23
    assert digest.sha256 == _reference_digest(_stored_rows(store, info))
    assert dataset_digest(store, PARTY, MIXED_TABLE, batch_rows=batch_rows) == digest
    own = client.read_dataframe(MIXED_TABLE)
    for name in names:
        assert _plain(frame[name]) == _plain(own[name]), name
        if name == "site":
            assert frame[name].dtype.kind == "O" or pd.api.types.is_string_dtype(frame[name])
        else:
            assert frame[name].dtype == "float32", name


def test_the_joined_path_is_taken_when_each_column_has_one_cell_length(
    mixed: tuple[Store, PartyClient, DatasetInfo],
) -> None:
    store, _, info = mixed
    rows = _stored_rows(store, info)
    joined = enclave_data._join_cells(rows, len(info.schema.columns))
    sites = info.schema.columns[4].categories or ()
    if "visits" in info.schema.column_names or "n" in sites:
        assert joined is None  # a plaintext column, or site cells of two lengths
    else:
        assert joined is not None
        assert sorted(set(joined.lengths)) == [0, 65, 81]  # "empty" is entirely NULL


def _replace_cell(store: Store, info: DatasetInfo, column: str, row: int, change: Any) -> None:
    table = sa.table(info.table_name, sa.column(ROW_ID), sa.column(column))
    with store.engine.begin() as conn:
        ids = conn.execute(sa.select(table.c[ROW_ID]).order_by(table.c[ROW_ID])).scalars().all()
        where = table.c[ROW_ID] == ids[row]
        cell = conn.execute(sa.select(table.c[column]).where(where)).scalar_one()
        conn.execute(sa.update(table).where(where).values({column: change(bytes(cell))}))


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("score", lambda cell: cell[:40] + bytes([cell[40] ^ 1]) + cell[41:]),  # tampered
        ("score", lambda cell: cell[:-16]),  # a shorter cell: the value-by-value path
        ("big", lambda cell: cell[:1] + bytes(32) + cell[33:]),  # a zeroed tag
        ("flag", lambda cell: cell + bytes(16)),  # a longer cell
    ],
)
@pytest.mark.parametrize("batch_rows", [4, 1000])
def test_a_bad_cell_names_the_party_and_column_only(
    mixed: tuple[Store, PartyClient, DatasetInfo], column: str, change: Any, batch_rows: int
) -> None:
    store, client, info = mixed
    _replace_cell(store, info, column, 10, change)  # a row where every column has a cell
    with pytest.raises(TrainingError) as stopped:
        read_party_frame(store, info, ceks=_keys(client), columns=["label"], batch_rows=batch_rows)
    assert str(stopped.value) == (
        f"party {PARTY!r}: column {column!r}: a cell does not decrypt under the party's key"
    )


def test_numbers_float32_cannot_hold_come_back_float64_and_exact(
    store_url: str, tmp_path: Path
) -> None:
    """float32 only when exact: a value past 2**24 keeps the whole column float64."""
    store = open_store(store_url)
    try:
        client = PartyClient(store, LocalKeyStore(tmp_path / "keys"), party=PARTY)
        client.create_keys()
        schema = DatasetSchema(
            table="Wide",
            columns=(
                ColumnSpec("label", "tinyint", categories=(0, 1), nullable=False),
                ColumnSpec("small", "bigint"),
                ColumnSpec("big", "bigint"),
                ColumnSpec("plain", "bigint", encrypted=False),
            ),
            label="label",
        )
        client.create_dataset(schema)
        rows = 9
        client.import_dataframe(
            pd.DataFrame(
                {
                    "label": [i % 2 for i in range(rows)],
                    "small": [None if i == 4 else i * 1000 for i in range(rows)],
                    "big": [None if i == 2 else 2**40 + i for i in range(rows)],
                    "plain": [2**30 + i for i in range(rows)],
                }
            ),
            dataset="Wide",
        )
        info = client.dataset("Wide")
        frame, _ = read_party_frame(
            store, info, ceks=_keys(client), columns=info.schema.column_names, batch_rows=4
        )
    finally:
        store.close()
    assert frame["small"].dtype == "float32"
    assert frame["label"].dtype == "float32"
    assert frame["big"].dtype == "float64"
    assert frame["plain"].dtype == "float64"
    assert _plain(frame["big"]) == [None if i == 2 else float(2**40 + i) for i in range(rows)]
    assert frame["plain"].tolist() == [float(2**30 + i) for i in range(rows)]
