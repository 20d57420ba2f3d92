"""The enclave's parallel decryption and the host's pipelined scan answer as the serial path.

A table of a few thousand rows, read in batches large enough for the enclave to fork
decryption workers (:class:`~cleanroom.crypto.CellWorkers`), on SQLite and PostgreSQL: every
query answers as the same query on an engine that decrypts in one process; a tampered cell
in a parallel batch fails with the same opaque error; the workers are gone afterwards.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.crypto import CellWorkers
from cleanroom.errors import ConfigurationError, DecryptionError, QueryError
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import AttestationSettings, Connection, QueryEngine, connect, simulated_enclave
from cleanroom.sql import enclave as enclave_module
from cleanroom.sql._select import pipelined
from cleanroom.store import ColumnSpec, DatasetSchema, Store, open_store
from cleanroom.tee import SimulatedLauncher

ROWS = 5_000
BATCH = 4_096  # the first batch is large enough for the workers, the second is not
SCHEMA = DatasetSchema(
    table="Big",
    columns=(
        ColumnSpec("n", "int"),
        ColumnSpec("word", "nvarchar(20)"),
        ColumnSpec("x", "float"),
        ColumnSpec("plain", "int", encrypted=False),
    ),
)
QUERIES: list[tuple[str, tuple[Any, ...]]] = [
    ("SELECT n FROM Big WHERE n >= ? AND n < ?", (200, 400)),
    ("SELECT * FROM Big WHERE n BETWEEN ? AND ?", (100, 130)),
    ("SELECT word, plain FROM Big WHERE n > ? OR x < ?", (990, 0.01)),
    ("SELECT word FROM Big WHERE word LIKE ?", ("w1%",)),
    ("SELECT n, word FROM Big ORDER BY n DESC, word", ()),
    ("SELECT TOP (25) word, n FROM Big ORDER BY x", ()),
    ("SELECT TOP (10) * FROM Big WHERE plain > ? ORDER BY n", (2_000,)),
    ("SELECT COUNT(*), MIN(n), MAX(word), MAX(x) FROM Big WHERE n < ?", (500,)),
    ("SELECT n, plain FROM Big TABLESAMPLE (30 PERCENT) REPEATABLE (3) WHERE n < ?", (600,)),
]


@dataclass
class Setup:
    store: Store
    parallel: Connection
    serial: Connection
    table: str


def _rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(ROWS):
        out.append(
            {
                "n": None if i % 97 == 0 else int(rng.integers(0, 1_000)),
                "word": f"w{int(rng.integers(0, 300))}",
                "x": float(rng.random()),
                "plain": i,
            }
        )
    return out


def _connection(
    store: Store, key_store: LocalKeyStore, launcher: SimulatedLauncher, workers: int
) -> Connection:
    enclave, measurement = simulated_enclave(launcher, decrypt_workers=workers)
    enclave._parallel_min_cells = 2_048
    settings = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    engine = QueryEngine(store, enclave=enclave, batch_size=BATCH)
    return connect(engine, key_store, party="p", attestation=settings, decrypt_workers=workers)


@pytest.fixture(scope="module")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True)


def _setup(url: str, root: Path, launcher: SimulatedLauncher) -> Iterator[Setup]:
    store = open_store(url)
    key_store = LocalKeyStore(root / "keys")
    client = PartyClient(store, key_store, party="p")
    client.create_keys()
    info = client.create_dataset(SCHEMA)
    client.import_records(_rows(), dataset="Big")
    yield Setup(
        store,
        _connection(store, key_store, launcher, workers=2),
        _connection(store, key_store, launcher, workers=0),
        info.table_name,
    )
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, launcher: SimulatedLauncher
) -> Iterator[Setup]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from _setup(url, tmp_path, launcher)


class _Counting(CellWorkers):
    made: list[_Counting] = []  # noqa: RUF012 - the spy's record
    calls = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.workers >= 2
        _Counting.made.append(self)

    def decrypt_many(self, cells: Any) -> list[bytes]:
        _Counting.calls += 1
        return super().decrypt_many(cells)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[_Counting]:
    _Counting.made = []
    _Counting.calls = 0
    monkeypatch.setattr(enclave_module, "CellWorkers", _Counting)
    return _Counting


def test_parallel_answers_equal_serial_answers(setup: Setup, spy: type[_Counting]) -> None:
    for sql, params in QUERIES:
        parallel = setup.parallel.execute(sql, params).fetchall()
        assert parallel == setup.serial.execute(sql, params).fetchall(), sql
    # The serial engine never forks; the parallel one did, for its large calls.
    assert spy.made
    assert spy.calls >= len(spy.made)
    # Every statement stopped its workers when it closed.
    assert multiprocessing.active_children() == []


def test_a_range_query_answers_as_numpy_does(setup: Setup) -> None:
    rows = _rows()
    expected = sorted(r["n"] for r in rows if r["n"] is not None and 250 <= r["n"] < 260)
    got = setup.parallel.execute("SELECT n FROM Big WHERE n >= ? AND n < ?", (250, 260))
    assert sorted(v for (v,) in got.fetchall()) == expected


def _tamper(setup: Setup, row_id: int) -> None:
    table = sa.table(setup.table, sa.column("row_id"), sa.column("n"))
    with setup.store.engine.begin() as conn:
        cell = conn.execute(sa.select(table.c.n).where(table.c.row_id == row_id)).scalar_one()
        flipped = bytearray(cell)
        flipped[-1] ^= 0x01
        conn.execute(sa.update(table).where(table.c.row_id == row_id).values(n=bytes(flipped)))


def test_a_tampered_cell_in_a_parallel_batch_fails_as_in_the_serial_path(
    setup: Setup, spy: type[_Counting]
) -> None:
    table = sa.table(setup.table, sa.column("row_id"), sa.column("n"))
    query = sa.select(table.c.row_id).where(table.c.n.is_not(None)).order_by(table.c.row_id)
    with setup.store.engine.connect() as conn:
        target = list(conn.execute(query).scalars())[1_500]  # in the first (parallel) batch
    _tamper(setup, target)
    for sql in ("SELECT n FROM Big WHERE n > ?", "SELECT TOP (3) n FROM Big ORDER BY n"):
        params = (5,) if "?" in sql else ()
        with pytest.raises(DecryptionError) as parallel:
            setup.parallel.execute(sql, params)
        with pytest.raises(DecryptionError) as serial:
            setup.serial.execute(sql, params)
        assert str(parallel.value) == str(serial.value)
        assert str(target) not in str(parallel.value)
    assert spy.made
    assert multiprocessing.active_children() == []


def test_decrypt_workers_must_not_be_negative(launcher: SimulatedLauncher, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="decrypt_workers"):
        simulated_enclave(launcher, decrypt_workers=-1)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    engine = QueryEngine(store)
    with pytest.raises(ConfigurationError, match="decrypt_workers"):
        connect(engine, LocalKeyStore(tmp_path / "keys"), party="p", decrypt_workers=-1)
    store.close()


def test_pipelined_keeps_order_and_works_the_first_item_on_the_callers_thread() -> None:
    threads: list[threading.Thread] = []

    def work(item: int) -> int:
        threads.append(threading.current_thread())
        return item * 10

    assert list(pipelined(range(6), work)) == [0, 10, 20, 30, 40, 50]
    assert threads[0] is threading.current_thread()
    assert all(t is not threading.current_thread() for t in threads[1:])
    assert list(pipelined([], work)) == []


def test_pipelined_raises_what_the_work_raises() -> None:
    def work(item: int) -> int:
        if item == 3:
            raise DecryptionError()
        return item

    results = pipelined(range(6), work)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(DecryptionError):
        next(results)


def test_the_client_decrypts_a_large_result_in_workers(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleanroom.sql import cursor as cursor_module

    made: list[CellWorkers] = []

    class Spy(CellWorkers):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cursor_module, "CellWorkers", Spy)
    monkeypatch.setattr(cursor_module, "CLIENT_PARALLEL_MIN_CELLS", 2_048)
    sql = "SELECT n, word, x, plain FROM Big ORDER BY plain"
    assert setup.parallel.execute(sql).fetchall() == setup.serial.execute(sql).fetchall()
    assert len(made) == 1  # one key, one pool for the three encrypted columns
    assert multiprocessing.active_children() == []


def test_rows_read_by_id_after_the_scan_keep_a_plaintext_order(setup: Setup) -> None:
    # The database sorts by the plaintext column; the enclave filters on an encrypted one;
    # the other output columns are then read by row id, and must follow that order.
    rows = _rows()
    expected = [
        (r["word"], r["n"], r["plain"])
        for r in sorted(rows, key=lambda r: r["plain"], reverse=True)
        if r["n"] is not None and r["n"] < 50
    ]
    sql = "SELECT word, n, plain FROM Big WHERE n < ? ORDER BY plain DESC"
    assert setup.parallel.execute(sql, (50,)).fetchall() == expected
    top = "SELECT TOP (5) word, x FROM Big WHERE n < ? ORDER BY plain DESC"
    assert (
        setup.parallel.execute(top, (50,)).fetchall()
        == [
            (r["word"], r["x"])
            for r in sorted(rows, key=lambda r: r["plain"], reverse=True)
            if r["n"] is not None and r["n"] < 50
        ][:5]
    )
