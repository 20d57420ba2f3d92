"""Bulk loads are one transaction, and two parties load concurrently, on SQLite and PostgreSQL."""

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from cleanroom.client import PartyClient
from cleanroom.errors import SchemaError, StorageError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import medical_record_schema, open_store

ROWS = 20_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: a SQLite file, or a private PostgreSQL schema (``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


def medical_records(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "risk": rng.randint(0, 4),
            "age": rng.randint(18, 95),
            "sex": rng.randint(0, 1),
            "smoker": None if rng.random() < 0.1 else rng.randint(0, 1),
            "chestPain": rng.randint(1, 4),
            "bloodPressure": rng.randint(90, 200),
            "serumCholestoral": rng.randint(120, 560),
            "fastingBloodSugar": rng.randint(0, 1),
            "maxHeartRate": rng.randint(70, 202),
        }
        for _ in range(count)
    ]


def write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    names = medical_record_schema().column_names
    lines = [",".join(names)]
    lines += [",".join("" if r[n] is None else str(r[n]) for n in names) for r in records]
    path.write_text("\n".join(lines) + "\n")


def party(url: str, tmp_path: Path, name: str, *, batch_size: int = 1000) -> PartyClient:
    client = PartyClient(
        open_store(url), LocalKeyStore(tmp_path / "keys" / name), party=name, batch_size=batch_size
    )
    client.create_keys()
    client.create_dataset()
    return client


def test_a_bad_row_at_the_end_leaves_nothing(store_url: str, tmp_path: Path) -> None:
    client = party(store_url, tmp_path, "hospital_a")
    records = medical_records(ROWS, seed=1)
    records[-1] = {**records[-1], "chestPain": 9}  # outside 1..4
    path = tmp_path / "a.csv"
    write_csv(path, records)
    with pytest.raises(SchemaError, match=f"line {ROWS + 1}, column 'chestPain'"):
        client.import_csv(path)
    assert client.store.count(client.dataset()) == 0


def test_a_failure_after_most_batches_are_written_rolls_all_back(
    store_url: str, tmp_path: Path
) -> None:
    client = party(store_url, tmp_path, "hospital_a")
    records = medical_records(ROWS, seed=2)
    written: list[int] = []

    def progress(done: int, total: int) -> None:
        written.append(done)
        if done >= total - 1000:  # 19 of 20 batches are in the transaction
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.import_records(records, progress=progress)
    assert written[-1] == ROWS - 1000
    assert client.store.count(client.dataset()) == 0
    # ... and a load that the database itself refuses in its last row (NULL label).
    info = client.dataset()
    batches = [{name: [b"\x01cell"] * 1000 for name in info.schema.column_names} for _ in range(19)]
    batches.append({name: [b"\x01cell"] * 999 + [None] for name in info.schema.column_names})
    with pytest.raises(StorageError):
        client.store.load(info, batches)
    assert client.store.count(info) == 0
    # The store is still usable afterwards.
    assert client.import_records(records[:10]) == 10
    assert client.read(limit=10) == records[:10]


def test_two_parties_load_concurrently_without_interfering(store_url: str, tmp_path: Path) -> None:
    clients = [party(store_url, tmp_path, name) for name in ("hospital_a", "hospital_b")]
    data = {c.party: medical_records(ROWS // 2, seed=i) for i, c in enumerate(clients)}
    errors: list[BaseException] = []
    start = threading.Barrier(len(clients))

    def load(client: PartyClient) -> None:
        try:
            start.wait()
            client.import_records(data[client.party])
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=load, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for client in clients:
        assert client.store.count(client.dataset()) == ROWS // 2
        assert client.read() == data[client.party]
