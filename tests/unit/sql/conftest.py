"""Fixtures for the enclave SQL tests: a party with keys, a table, an engine with an enclave."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import (
    AttestationSettings,
    Connection,
    Enclave,
    QueryEngine,
    connect,
    simulated_enclave,
)
from cleanroom.store import ColumnSpec, DatasetSchema, Store, open_store
from cleanroom.tee import SimulatedLauncher

SCHEMA = DatasetSchema(
    table="People",
    columns=(
        ColumnSpec("age", "int"),
        ColumnSpec("name", "nvarchar(40)"),
        ColumnSpec("site", "nvarchar(20)", encryption="deterministic"),
        ColumnSpec("score", "float"),
        ColumnSpec("visits", "int", encrypted=False),
        ColumnSpec("born", "date"),
    ),
)
ROWS: list[dict[str, Any]] = [
    {
        "age": 30,
        "name": "alice",
        "site": "x",
        "score": 1.5,
        "visits": 1,
        "born": dt.date(1990, 1, 1),
    },
    {"age": 40, "name": "bob", "site": "y", "score": 2.5, "visits": 2, "born": None},
    {
        "age": None,
        "name": "carol",
        "site": "x",
        "score": None,
        "visits": 3,
        "born": dt.date(1980, 5, 5),
    },
    {
        "age": 25,
        "name": None,
        "site": None,
        "score": 0.5,
        "visits": None,
        "born": dt.date(2000, 2, 2),
    },
    {
        "age": 40,
        "name": "Bobby",
        "site": "y",
        "score": 9.0,
        "visits": 5,
        "born": dt.date(1970, 1, 1),
    },
]


@dataclass
class Env:
    store: Store
    key_store: LocalKeyStore
    client: PartyClient
    launcher: SimulatedLauncher
    enclave: Enclave
    measurement: str
    engine: QueryEngine
    settings: AttestationSettings

    def connect(self, **overrides: object) -> Connection:
        options: dict[str, object] = {"party": "a", "attestation": self.settings}
        options.update(overrides)
        return connect(self.engine, self.key_store, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True)


def make_env(tmp_path: Path, launcher: SimulatedLauncher) -> Env:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    key_store = LocalKeyStore(tmp_path / "keys")
    client = PartyClient(store, key_store, party="a")
    client.create_keys()
    client.create_dataset(SCHEMA)
    client.import_records(ROWS, dataset="People")
    enclave, measurement = simulated_enclave(launcher)
    settings = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    return Env(
        store,
        key_store,
        client,
        launcher,
        enclave,
        measurement,
        QueryEngine(store, enclave=enclave),
        settings,
    )


@pytest.fixture
def env(tmp_path: Path, launcher: SimulatedLauncher) -> Iterator[Env]:
    """A fresh environment (for tests that change it)."""
    made = make_env(tmp_path, launcher)
    yield made
    made.store.close()


@pytest.fixture(scope="module")
def shared_env(
    tmp_path_factory: pytest.TempPathFactory, launcher: SimulatedLauncher
) -> Iterator[Env]:
    """One environment for a module's read-only tests."""
    made = make_env(tmp_path_factory.mktemp("sql"), launcher)
    yield made
    made.store.close()
