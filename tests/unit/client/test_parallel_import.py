"""Imports encrypted on worker processes: the same cells, the same errors, nothing left running."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from cleanroom.client import PartyClient
from cleanroom.client import _client as client_module
from cleanroom.crypto import CellCipher, EncryptionType, normalize, parallel
from cleanroom.errors import SchemaError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetSchema, Store, open_store

pytestmark = pytest.mark.skipif(not parallel.fork_available(), reason="no fork on this platform")

SCHEMA = DatasetSchema.from_json(
    """{"table": "Wide", "label": "risk", "columns": [
        {"name": "risk", "type": "tinyint", "categories": [0, 1, 2]},
        {"name": "code", "type": "nvarchar(12)", "encryption": "deterministic"},
        {"name": "age", "type": "tinyint"},
        {"name": "ward", "type": "int", "encrypted": false}
    ]}"""
)
ROWS = 3_000


def _records(rows: int = ROWS) -> list[dict[str, object]]:
    return [
        {
            "risk": i % 3,
            "code": f"c{i % 97}",
            "age": None if i % 11 == 0 else 20 + i % 70,  # NULLs inside encrypted batches
            "ward": i,
        }
        for i in range(rows)
    ]


def _csv(path: Path, rows: int = ROWS, *, bad_line: int | None = None) -> Path:
    lines = ["risk,code,age,ward"]
    for i, record in enumerate(_records(rows)):
        age = "" if record["age"] is None else str(record["age"])
        risk = "7" if bad_line is not None and i + 2 == bad_line else str(record["risk"])
        lines.append(f"{risk},{record['code']},{age},{record['ward']}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a few thousand rows a 'large' import split over many batches and requests."""
    monkeypatch.setattr(client_module, "PARALLEL_MIN_CELLS", 1_000)
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 100)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


def _client(store: Store, tmp_path: Path, party: str, workers: int | None) -> PartyClient:
    client = PartyClient(
        store,
        LocalKeyStore(tmp_path / "keys" / party),
        party=party,
        batch_size=250,
        workers=workers,
    )
    client.create_keys()
    client.create_dataset(SCHEMA)
    return client


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def test_parallel_import_writes_cells_the_plain_cipher_reads(store: Store, tmp_path: Path) -> None:
    before = _children()
    client = _client(store, tmp_path, "hospital_p", workers=2)
    assert client.import_records(_records(), dataset="Wide") == ROWS
    assert _children() == before  # the workers of the import were joined
    assert client.read("Wide") == _records()
    # Byte-compatible: every stored cell decrypts with a plain, in-process CellCipher.
    raw = store.rows(client.dataset("Wide"))
    cek = client.column_encryption_key(client.default_cek_name)
    for name, kind in (("age", EncryptionType.RANDOMIZED), ("code", EncryptionType.DETERMINISTIC)):
        cells = [row[name] for row in raw if row[name] is not None]
        assert len(cells) == sum(1 for r in _records() if r[name] is not None)
        CellCipher(cek, kind).decrypt_many(cells)
    # Deterministic cells equal those of a serial encryption; equality search still works.
    serial = CellCipher(cek, EncryptionType.DETERMINISTIC)
    assert raw[5]["code"] == serial.encrypt(normalize("c5", "nvarchar(12)"))
    assert len(client.read("Wide", where={"code": "c5"})) == len(range(5, ROWS, 97))


def test_parallel_and_in_process_imports_store_the_same_rows(store: Store, tmp_path: Path) -> None:
    csv = _csv(tmp_path / "wide.csv")
    parallel_client = _client(store, tmp_path, "hospital_p", workers=2)
    serial_client = _client(store, tmp_path, "hospital_s", workers=0)
    progress: list[tuple[int, int]] = []
    assert parallel_client.import_csv(csv, dataset="Wide", progress=lambda *p: progress.append(p))
    assert serial_client.import_csv(csv, dataset="Wide") == ROWS
    assert progress[-1] == (ROWS, ROWS)
    assert len(progress) == ROWS // 250
    assert parallel_client.read("Wide") == serial_client.read("Wide") == _records()


def test_a_bad_row_late_in_a_parallel_import_writes_nothing(store: Store, tmp_path: Path) -> None:
    before = _children()
    client = _client(store, tmp_path, "hospital_p", workers=2)
    csv = _csv(tmp_path / "bad.csv", bad_line=ROWS)  # after many batches went to the workers
    with pytest.raises(SchemaError, match=f"line {ROWS}, column 'risk'") as caught:
        client.import_csv(csv, dataset="Wide")
    assert "7" not in str(caught.value).replace(str(csv), "").replace(f"line {ROWS}", "")
    assert store.count(client.dataset("Wide")) == 0
    assert _children() == before


def test_a_small_ahead_window_still_imports_everything(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "_AHEAD_CELLS", 600)  # about one batch in flight
    client = _client(store, tmp_path, "hospital_p", workers=2)
    assert client.import_records(_records(), dataset="Wide") == ROWS
    assert client.read("Wide") == _records()


@pytest.mark.parametrize("workers", [0, 1])
def test_workers_zero_or_one_import_in_process(
    store: Store, tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no worker processes expected")

    monkeypatch.setattr(client_module, "CellWorkers", refuse)
    client = _client(store, tmp_path, "hospital_p", workers=workers)
    assert client.import_records(_records(), dataset="Wide") == ROWS
    assert client.read("Wide") == _records()


def test_negative_workers_are_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        PartyClient(store, LocalKeyStore(tmp_path / "k"), party="hospital_p", workers=-1)
