import datetime as dt
import decimal
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cleanroom.client import PartyClient
from cleanroom.crypto.wrapping import verify_cmk_metadata
from cleanroom.errors import KeyWrapError, SchemaError, StorageError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetSchema, Store, open_store

VISITS = DatasetSchema.from_json(
    """{"table": "Visits", "label": "risk", "columns": [
        {"name": "risk", "type": "tinyint", "categories": [0, 1, 2]},
        {"name": "ssn", "type": "nvarchar(20)", "encryption": "deterministic"},
        {"name": "seen", "type": "date"},
        {"name": "fee", "type": "decimal(8,2)"},
        {"name": "ward", "type": "int", "encrypted": false}
    ]}"""
)
CSV = """risk,ssn,seen,fee,ward
0,111-22-3333,2024-01-05,12.50,7
2,999-88-7777,2024-02-29,,3
1,111-22-3333,,0.01,7
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def client(store: Store, tmp_path: Path) -> PartyClient:
    party = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "a"), party="hospital_a")
    party.create_keys()
    party.create_dataset(VISITS)
    return party


def test_create_keys_registers_a_signed_cmk_and_a_wrapped_cek(store: Store, tmp_path: Path) -> None:
    key_store = LocalKeyStore(tmp_path / "keys" / "k")
    keys = PartyClient(store, key_store, party="hospital_k").create_keys()
    cmk = store.column_master_key(keys.column_master_key)
    assert cmk.key_store_provider_name == key_store.provider_name
    assert cmk.allow_enclave_computations
    assert cmk.signature is not None
    verify_cmk_metadata(key_store, cmk.key_path, cmk.signature, allow_enclave_computations=True)
    value = store.column_encryption_key(keys.column_encryption_key).values[0]
    assert value.column_master_key_name == keys.column_master_key
    assert value.encrypted_value[0] == 0x01  # the ENCRYPTED_VALUE blob, not a raw key
    with pytest.raises(StorageError, match="already registered"):
        PartyClient(store, key_store, party="hospital_k").create_keys()


def test_csv_import_round_trips_and_keeps_null(client: PartyClient, tmp_path: Path) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(CSV)
    seen: list[tuple[int, int]] = []
    assert client.import_csv(path, dataset="Visits", progress=lambda d, t: seen.append((d, t))) == 3
    assert seen[-1] == (3, 3)
    rows = client.read("Visits")
    assert rows[0] == {
        "risk": 0,
        "ssn": "111-22-3333",
        "seen": dt.date(2024, 1, 5),
        "fee": decimal.Decimal("12.50"),
        "ward": 7,
    }
    assert rows[1]["fee"] is None
    assert rows[2]["seen"] is None
    raw = client.store.rows(client.dataset("Visits"))
    assert isinstance(raw[0]["ssn"], bytes)
    assert raw[0]["ssn"][0] == 0x01  # an Always Encrypted cell
    assert raw[1]["fee"] is None  # NULL is never encrypted


def test_deterministic_equality_search_compares_ciphertext(
    client: PartyClient, tmp_path: Path
) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(CSV)
    client.import_csv(path, dataset="Visits")
    found = client.read("Visits", where={"ssn": "111-22-3333"})
    assert [r["risk"] for r in found] == [0, 1]
    assert client.read("Visits", where={"ssn": "000-00-0000"}) == []
    assert [r["risk"] for r in client.read("Visits", where={"ward": 3})] == [2]
    raw = client.store.rows(client.dataset("Visits"))
    assert raw[0]["ssn"] == raw[2]["ssn"]  # deterministic: equal plaintext, equal cell
    with pytest.raises(StorageError, match="randomized"):
        client.read("Visits", where={"fee": "12.50"})


def test_a_bad_row_names_line_and_column_but_not_the_value(
    client: PartyClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(CSV + "7,123-45-6789,2024-03-01,1.00,7\n")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SchemaError) as info:
        client.import_csv(path, dataset="Visits")
    message = str(info.value)
    assert "line 5" in message
    assert "'risk'" in message
    assert "7" not in message.replace(str(path), "").replace("line 5", "")
    assert client.store.count(client.dataset("Visits")) == 0
    assert "123-45-6789" not in caplog.text


def test_a_bad_plaintext_value_may_be_quoted(client: PartyClient, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(CSV + "1,1,2024-03-01,1.00,seven\n")
    with pytest.raises(SchemaError, match=r"line 5, column 'ward'.*'seven'"):
        client.import_csv(path, dataset="Visits")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("risk,ssn,seen,fee\n0,1,2024-01-01,1\n", "missing ward"),
        ("risk,ssn,seen,fee,ward,extra\n", "unknown extra"),
        (CSV + "1,2,3\n", "line 5: expected 5 fields, found 3"),
        ('risk,ssn,seen,fee,ward\n1,"unterminated\n', "malformed CSV"),
        ("", "empty"),
    ],
)
def test_malformed_csv_is_refused(
    client: PartyClient, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(SchemaError, match=message):
        client.import_csv(path, dataset="Visits")
    assert client.store.count(client.dataset("Visits")) == 0


def test_dataframe_import_and_read_back(client: PartyClient) -> None:
    frame = pd.DataFrame(
        {
            "ward": [1, 2],
            "risk": pd.array([1, 2], dtype="Int16"),
            "ssn": ["a", None],
            "seen": [pd.Timestamp("2024-05-01"), pd.NaT],
            "fee": [1.25, float("nan")],
        }
    )
    assert client.import_dataframe(frame, dataset="Visits") == 2
    back = client.read_dataframe("Visits")
    assert list(back.columns) == ["risk", "ssn", "seen", "fee", "ward"]
    assert back.loc[0, "fee"] == decimal.Decimal("1.25")
    assert pd.isna(back.loc[1, "ssn"])
    bad = frame.assign(risk=pd.array([1, 9], dtype="Int16"))
    with pytest.raises(SchemaError, match="DataFrame row 1, column 'risk'"):
        client.import_dataframe(bad, dataset="Visits")
    assert client.store.count(client.dataset("Visits")) == 2


def test_medical_records_by_default(store: Store, tmp_path: Path) -> None:
    party = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "m"), party="hospital_m")
    party.create_keys()
    party.create_dataset()
    record = {
        "risk": 1,
        "age": 63,
        "sex": 1,
        "smoker": None,
        "chestPain": 4,
        "bloodPressure": 145,
        "serumCholestoral": 233,
        "fastingBloodSugar": 1,
        "maxHeartRate": 150,
    }
    assert party.import_records([record]) == 1
    assert party.read() == [record]


def test_another_partys_key_store_cannot_unwrap(
    store: Store, client: PartyClient, tmp_path: Path
) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(CSV)
    client.import_csv(path, dataset="Visits")
    other = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "b"), party="hospital_b")
    other.create_keys()
    # Party B's key store, asked for party A's CEK (same provider, a different key).
    intruder = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "b"), party="hospital_a")
    with pytest.raises(KeyWrapError):
        intruder.read("Visits")
    # The same key name with different key material: a wrong key, caught by the signature.
    swapped = tmp_path / "keys" / "swap"
    shutil.copytree(tmp_path / "keys" / "b", swapped)
    (swapped / "cmk_hospital_b.pem").rename(swapped / "cmk_hospital_a.pem")
    impostor = PartyClient(store, LocalKeyStore(swapped), party="hospital_a")
    with pytest.raises(KeyWrapError, match="signature"):
        impostor.read("Visits")


def test_reprs_hold_no_keys(client: PartyClient) -> None:
    assert "hospital_a" in repr(client)
    cek = client.column_encryption_key(client.default_cek_name)
    assert cek.secret_bytes().hex() not in repr(client)


def test_cmk_rotation_keeps_the_cek_and_both_cmks_unwrap(
    store: Store, client: PartyClient, tmp_path: Path
) -> None:
    client.import_records(
        [{"risk": 1, "ssn": "x", "seen": None, "fee": None, "ward": 1}], dataset="Visits"
    )
    new = client.rotate_master_key("CMK_hospital_a_2026")
    values = store.column_encryption_key(client.default_cek_name).values
    assert {v.column_master_key_name for v in values} == {"CMK_hospital_a", "CMK_hospital_a_2026"}
    client.finish_master_key_rotation("CMK_hospital_a")
    # The old key file gone, a fresh client unwraps the CEK with the new CMK alone.
    (tmp_path / "keys" / "a" / "cmk_hospital_a.pem").unlink()
    fresh = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "a"), party="hospital_a")
    assert fresh.read("Visits")[0]["ssn"] == "x"
    assert new.key_path == "cmk_hospital_a_2026"


def test_close_zeroes_the_unwrapped_keys_and_the_client_unwraps_again(
    store: Store, client: PartyClient, tmp_path: Path
) -> None:
    cek = client.column_encryption_key(client.default_cek_name)
    with client as same:
        assert same is client
    assert cek.zeroed
    # The store and the key store were passed in: they stay open and the client works on.
    client.import_records(
        [{"risk": 1, "ssn": "x", "seen": None, "fee": None, "ward": 1}], dataset="Visits"
    )
    assert client.read("Visits")[0]["ssn"] == "x"
    again = client.column_encryption_key(client.default_cek_name)
    assert not again.zeroed
    fresh = PartyClient(store, LocalKeyStore(tmp_path / "keys" / "a"), party="hospital_a")
    assert fresh.column_encryption_key(fresh.default_cek_name) == again
    client.close()
    client.close()  # idempotent
    assert again.zeroed
