"""Reading every party's ciphertext, serially and in forked reader processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cleanroom.client import PartyClient
from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.data import generate_sites
from cleanroom.enclave.data import _digest_batch, default_workers, read_parties
from cleanroom.errors import TrainingError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetInfo, Store, open_store

PARTIES = ("hospital_a", "hospital_b", "hospital_c")
COLUMNS = ["age", "chestPain", "sex", "bloodPressure", "risk"]


@pytest.fixture(params=["sqlite", "postgresql"])
def loaded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Store, dict[str, PartyClient]]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    store = open_store(url)
    clients = {}
    for party, frame in zip(PARTIES, generate_sites(3, 61, seed=5).values(), strict=True):
        client = PartyClient(store, LocalKeyStore(tmp_path / "keys" / party), party=party)
        client.create_keys()
        client.create_dataset()
        client.import_dataframe(frame)
        clients[party] = client
    try:
        yield store, clients
    finally:
        store.close()


def _keys(clients: dict[str, PartyClient]) -> dict[str, dict[str, ColumnEncryptionKey]]:
    return {
        party: {
            f"CEK_{party}": ColumnEncryptionKey(
                client.column_encryption_key(f"CEK_{party}").secret_bytes()
            )
        }
        for party, client in clients.items()
    }


def _datasets(clients: dict[str, PartyClient]) -> list[tuple[str, DatasetInfo]]:
    return [(party, client.dataset()) for party, client in clients.items()]


@pytest.mark.parametrize("workers", [2, 3])
def test_forked_readers_give_what_one_process_gives(
    loaded: tuple[Store, dict[str, PartyClient]], workers: int
) -> None:
    store, clients = loaded
    serial = list(read_parties(store, _datasets(clients), _keys(clients), columns=COLUMNS))
    keys = _keys(clients)
    parallel = list(read_parties(store, _datasets(clients), keys, columns=COLUMNS, workers=workers))
    assert [r.party for r in parallel] == [r.party for r in serial] == list(PARTIES)
    for one, other in zip(serial, parallel, strict=True):
        assert [d for _, d in one.digests] == [d for _, d in other.digests]
        for mine, theirs in zip(one.frames, other.frames, strict=True):
            assert list(mine.columns) == COLUMNS
            assert np.array_equal(mine.to_numpy(), theirs.to_numpy(), equal_nan=True)
    # What the parties themselves read is what the enclave decrypted.
    for read in serial:
        own = clients[read.party].read_dataframe()
        for column in COLUMNS:
            assert np.array_equal(
                read.frames[0][column].to_numpy(dtype="float64"),
                own[column].astype("float64").to_numpy(),
                equal_nan=True,
            )
    # Every key was zeroed once its party was read, and no reader process is left.
    assert all(k.zeroed for party_keys in keys.values() for k in party_keys.values())
    assert multiprocessing.active_children() == []


def test_a_wrong_key_in_a_forked_reader_names_the_party(
    loaded: tuple[Store, dict[str, PartyClient]],
) -> None:
    store, clients = loaded
    keys = _keys(clients)
    keys["hospital_b"] = {"CEK_hospital_b": ColumnEncryptionKey.generate()}
    refused = r"party 'hospital_b': column '\w+': .*does not decrypt"
    with pytest.raises(TrainingError, match=refused):
        list(read_parties(store, _datasets(clients), keys, columns=COLUMNS, workers=2))
    assert all(k.zeroed for party_keys in keys.values() for k in party_keys.values())
    assert multiprocessing.active_children() == []


def test_default_workers_is_bounded_by_parties_and_cpus() -> None:
    assert default_workers(1) == 1
    assert 1 <= default_workers(64) <= 64


def _spec_digest(rows: list[tuple[Any, ...]]) -> str:
    """The digest framing written out from the module docstring, value by value."""
    hasher = hashlib.sha256()
    for row in rows:
        for value in row:
            if value is None:
                hasher.update(b"\x00")
            elif isinstance(value, bytes):
                hasher.update(b"\x01" + struct.pack(">I", len(value)) + value)
            else:
                text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")
                hasher.update(b"\x02" + struct.pack(">I", len(text)) + text)
    return hasher.hexdigest()


@pytest.mark.parametrize(
    "rows",
    [
        [(b"\x01" * 65, b"\x02" * 81), (b"", b"\x03" * 65)],  # cells of several sizes
        [(b"\x01" * 65, b"\x02" * 65), (b"\x04" * 65, b"\x03" * 65)],  # one size (numpy)
        [(b"",), (b"",)],
        [(b"\x01" * 65, None), (None, b"\x03" * 65), (b"", None)],  # cells and NULLs
        [(b"\x01" * 65, None), (7, "é"), (None, 2.5)],  # NULLs and plaintext columns
        [],
    ],
)
def test_batch_digest_follows_the_documented_framing(rows: list[tuple[Any, ...]]) -> None:
    hasher = hashlib.sha256()
    _digest_batch(hasher, rows)
    assert hasher.hexdigest() == _spec_digest(rows)
