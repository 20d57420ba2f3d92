"""Enclave SQL speed: a range query and an ORDER BY on a randomized column vs a plaintext one.

    .venv/bin/python benchmarks/bench_sql.py [--rows N] [--repeat R] [--store URL] [--no-write]

One table holds the same integers twice: ``enc`` (int, randomized encryption) and ``plain``
(int, not encrypted). Each query runs through the client (``cursor.execute`` + ``fetchall``,
results decrypted) on both columns, side by side; the ratio is encrypted / plaintext. The
plaintext query is answered by the database (SQLite by default); the encrypted one streams
the column's cells through the in-process enclave (simulated TEE), which decrypts each batch
in forked worker processes (``CellWorkers``) while the host fetches the next batch. Then
``CREATE INDEX`` builds a sealed enclave index on ``enc`` and the range query runs again
through it (and, for comparison, on ``plain`` with a database B-tree index). Writes the
"Enclave SQL" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np

from _report import machine, write_section
from cleanroom.attestation import AttestationPolicy
from cleanroom.client import PartyClient
from cleanroom.crypto import CellCipher, EncryptionType, normalize_many
from cleanroom.crypto.parallel import default_workers
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import AttestationSettings, Connection, QueryEngine, connect, simulated_enclave
from cleanroom.sql.cursor import CLIENT_PARALLEL_MIN_CELLS
from cleanroom.sql.engine import DEFAULT_BATCH_SIZE, paused_gc
from cleanroom.store import ColumnSpec, DatasetSchema, open_store
from cleanroom.tee import SimulatedLauncher

SCHEMA = DatasetSchema(
    table="Bench",
    columns=(ColumnSpec("enc", "int"), ColumnSpec("plain", "int", encrypted=False)),
)
BATCH = 100_000


def parts(url: str, root: Path, seal_bytes: int) -> tuple[float, float, float]:
    """Best-of-2 seconds to fetch every cell of ``enc`` from the store, to decrypt them
    all with ``CellCipher.decrypt_many`` in this process (one core), and to encrypt one cell
    of ``seal_bytes`` bytes (what sealing the index costs)."""
    store = open_store(url)
    key_store = LocalKeyStore(root / "keys")
    client = PartyClient(store, key_store, party="bench")
    cipher = CellCipher(client.column_encryption_key(client.default_cek_name))
    table = store.dataset("bench", "Bench").table_name
    fetch, decrypt = [], []
    for _ in range(2):
        start = time.perf_counter()
        with store.engine.connect() as conn:
            cursor = conn.exec_driver_sql(f'SELECT enc FROM "{table}"').cursor  # noqa: S608
            cells: list[bytes] = []
            while rows := cursor.fetchmany(65_536):
                cells.extend(row[0] for row in rows)
        fetch.append(time.perf_counter() - start)
        start = time.perf_counter()
        cipher.decrypt_many(cells)
        decrypt.append(time.perf_counter() - start)
        del cells
    start = time.perf_counter()
    cipher.encrypt(bytes(seal_bytes))
    seal = time.perf_counter() - start
    store.close()
    return min(fetch), min(decrypt), seal


def build(url: str, root: Path, rows: int) -> tuple[Connection, int]:
    store = open_store(url)
    key_store = LocalKeyStore(root / "keys")
    client = PartyClient(store, key_store, party="bench")
    client.create_keys()
    info = client.create_dataset(SCHEMA)
    cipher = CellCipher(
        client.column_encryption_key(client.default_cek_name), EncryptionType.RANDOMIZED
    )
    values = np.random.default_rng(1).integers(0, 1_000_000, size=rows)

    def batches() -> Iterator[dict[str, list[Any]]]:
        for start in range(0, rows, BATCH):
            chunk = [int(v) for v in values[start : start + BATCH]]
            yield {"enc": cipher.encrypt_many(normalize_many(chunk, "int")), "plain": chunk}

    store.load(info, batches())
    launcher = SimulatedLauncher(allow_simulation=True)
    enclave, measurement = simulated_enclave(launcher)
    settings = AttestationSettings(
        policy=AttestationPolicy(
            allow_simulation=True, allowed_measurements=frozenset({measurement})
        ),
        trusted_roots=[launcher.root_certificate],
    )
    engine = QueryEngine(store, enclave=enclave)
    return connect(engine, key_store, party="bench", attestation=settings), int(
        np.count_nonzero((values >= 400_000) & (values < 410_000))
    )


def index_size(connection: Connection) -> int:
    """Bytes of the sealed index blob in the catalog (all the operator learns of it)."""
    store = connection._engine.store
    with store.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT length(blob) FROM cr_enclave_index").scalar_one()
    return int(size)


def plaintext_btree(connection: Connection, sql: str, values: Any, repeat: int) -> float:
    """Best seconds of the plaintext range query once ``plain`` has a database B-tree index."""
    store = connection._engine.store
    table = store.dataset("bench", "Bench").table_name
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE INDEX ix_plain ON "{table}" (plain)')
    statement = sql.format(c="plain")

    def run() -> int:
        return len(connection.execute(statement, values).fetchall())

    run()
    return best(run, repeat)[0]


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - start)
    return min(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = args.store or f"sqlite:///{root / 'bench.db'}"
        start = time.perf_counter()
        connection, expected = build(url, root, args.rows)
        load = time.perf_counter() - start
        queries = {
            "range (1% of rows)": "SELECT {c} FROM Bench WHERE {c} >= ? AND {c} < ?",
            "ORDER BY (all rows)": "SELECT {c} FROM Bench ORDER BY {c}",
            "TOP (100) … ORDER BY": "SELECT TOP (100) {c} FROM Bench ORDER BY {c}",
        }
        params = {"range (1% of rows)": (400_000, 410_000)}
        lines = []
        loads = []
        results: dict[str, tuple[float, float]] = {}
        for label, sql in queries.items():
            timings = {}
            for column in ("plain", "enc"):
                statement = sql.format(c=column)
                values = params.get(label, ())

                def run(statement: str = statement, values: Any = values) -> int:
                    return len(connection.execute(statement, values).fetchall())

                run()  # warm up (attestation, caches)
                timings[column] = best(run, args.repeat)
                loads.append(os.getloadavg()[0])
            results[label] = (timings["plain"][0], timings["enc"][0])
            plain_s, plain_n = timings["plain"]
            enc_s, enc_n = timings["enc"]
            assert plain_n == enc_n, (label, plain_n, enc_n)
            if label.startswith("range"):
                assert enc_n == expected
            lines.append(
                f"| {label} | {enc_n:,} | {plain_s * 1000:,.0f} ms | {enc_s * 1000:,.0f} ms "
                f"| {enc_s / plain_s:.1f}× |"
            )
        # The sealed enclave index: build it, then the range query again (same plaintext).
        start = time.perf_counter()
        indexed_rows = connection.execute("CREATE INDEX ix_enc ON Bench (enc)").rowcount
        build_s = time.perf_counter() - start
        loads.append(os.getloadavg()[0])
        label = "range (1% of rows), enclave index"
        range_sql = queries["range (1% of rows)"]

        def run_indexed() -> int:
            statement = range_sql.format(c="enc")
            return len(connection.execute(statement, params["range (1% of rows)"]).fetchall())

        run_indexed()
        indexed_s, indexed_n = best(run_indexed, args.repeat)
        loads.append(os.getloadavg()[0])
        assert indexed_n == expected, (indexed_n, expected)
        plain_s = results["range (1% of rows)"][0]
        lines.append(
            f"| {label} | {indexed_n:,} | {plain_s * 1000:,.0f} ms | {indexed_s * 1000:,.0f} ms "
            f"| {indexed_s / plain_s:.1f}× |"
        )
        lines.append(
            f"| index build (`CREATE INDEX`, once) | {indexed_rows:,} indexed | – "
            f"| {build_s * 1000:,.0f} ms | – |"
        )
        blob_bytes = index_size(connection)
        btree_s = plaintext_btree(connection, range_sql, params["range (1% of rows)"], args.repeat)
        with paused_gc():
            fetch_s, decrypt_s, seal_s = parts(url, root, blob_bytes)
        loads.append(os.getloadavg()[0])
    backend = url.split(":", 1)[0]
    range_plain, range_enc = results["range (1% of rows)"]
    workers = default_workers()
    floor = (fetch_s + decrypt_s) / workers
    body = "\n".join(
        [
            f"`benchmarks/bench_sql.py --rows {args.rows} --repeat {args.repeat}`: one table of "
            f"{args.rows:,} random integers stored twice, as a randomized-encrypted `int` column "
            f"and as a plaintext `int` column; {backend} store; best of {args.repeat} after a "
            "warm-up. Each figure is the whole client call (`cursor.execute` + `fetchall`, "
            "results decrypted). The plaintext query is answered by the database. The "
            "encrypted query streams the column through the in-process enclave (simulated "
            f"TEE) in batches of {DEFAULT_BATCH_SIZE:,} cells: the host fetches only the "
            "column it filters or sorts on (the other output columns are read by row id "
            "afterwards, for the rows kept), and while the enclave decrypts and compares one "
            f"batch in {workers} forked worker processes (`CellWorkers`, keys inherited, "
            "never pickled) a helper thread lets the host fetch the next. The enclave "
            "compares the decrypted integers with numpy, keeps the sort values of the rows it "
            "keeps (an encrypted ORDER BY decrypts each cell once in the enclave), and "
            "returns row positions; the client decrypts a result column of "
            f"{CLIENT_PARALLEL_MIN_CELLS:,} cells or more in {workers} worker processes too.",
            "",
            "| query | rows returned | plaintext column | encrypted column | ratio |",
            "|---|---:|---:|---:|---:|",
            *lines,
            "",
            "What bounds the encrypted range query: every cell of the column is fetched "
            f"from the store ({fetch_s:.2f} s for all {args.rows:,} cells on one thread, "
            "measured alone) and authenticated and decrypted "
            f"({decrypt_s:.2f} s of one core with `CellCipher.decrypt_many`, most of it one "
            "HMAC-SHA256 per cell), while the database answers the plaintext query in "
            f"{range_plain:.2f} s. Spread over {workers} cores, that is at best about "
            f"{floor:.2f} s (measured: {range_enc:.2f} s), "
            f"{floor / range_plain:.0f}× the plaintext time: "
            + (
                "a full scan of a randomized column cannot be within the 10× target of a "
                "plaintext scan on this machine; only an index can. "
                if floor > 10 * range_plain
                else "so even a perfect full scan would be at the edge of the 10× target on "
                "this machine; only an index is well within it. "
            )
            + "The full `ORDER BY` decrypts every cell twice by design: once in the enclave "
            "to sort, once in the client, which receives cells.",
            "",
            "The sealed enclave index (`CREATE INDEX ix_enc ON Bench (enc)`, see "
            '`docs/sql.md`, "Enclave index"): the enclave decrypts the column once, sorts '
            f"its {indexed_rows:,} (value, row id) pairs and seals them as one Always Encrypted "
            f"cell of {blob_bytes / 2**20:.1f} MiB under the column's key; building it took "
            f"{build_s:.2f} s: one scan of the column as above, a sort, and the encryption "
            f"of that one long cell ({seal_s:.2f} s measured alone: the cell cipher runs CBC "
            "block after block within one cell, vectorized only across cells). A range "
            "query then hands the blob to the enclave, which "
            "unseals it once (then keeps it, per blob and key), binary-searches the candidate "
            "row ids, and evaluates the whole predicate on the candidate rows the host reads "
            "by id (plus any row appended since the build): "
            f"{indexed_s * 1000:,.0f} ms, {indexed_s / range_plain:.1f}× the plaintext "
            "query answered by a scan of the plaintext column. Each indexed query still "
            "reads the blob from the catalog and hashes it (the enclave's cache key). "
            "Against a plaintext column with its own database B-tree index the plaintext "
            f"query takes {btree_s * 1000:,.0f} ms (the encrypted indexed query is "
            f"{indexed_s / btree_s:.1f}× that). SQL Server's enclave-enabled indexes on "
            "randomized columns are stored in the database in plaintext order, so the DBA "
            "sees the order of the values; the sealed index shows the operator only its "
            "size and, per query, which rows are read (the rows the indexed terms match).",
            "",
            f"Load: {load:.0f} s (encrypt and insert). Machine: {machine()}; load average "
            f"{min(loads):.1f}–{max(loads):.1f} during the queries (the machine is shared "
            "with other jobs; figures from a busy machine are slower than an idle one, and "
            "the ratio moves with the load).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("Enclave SQL", body)


if __name__ == "__main__":
    main()
