"""Reading a party's ciphertext in the enclave: digest, decryption, validation, guards."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.client import PartyClient
from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.data import generate_sites
from cleanroom.enclave.data import (
    DIGEST_FORMAT,
    check_schema,
    dataset_digest,
    read_party_frame,
)
from cleanroom.errors import TrainingError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetInfo, DatasetSchema, Store, medical_record_schema, open_store

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
