"""Enclave SQL speed: a range query and an ORDER BY on a randomized column vs a plaintext one.

    .venv/bin/python benchmarks/bench_sql.py [--rows N] [--repeat R] [--store URL] [--no-write]

One table holds the same integers twice: ``enc`` (int, randomized encryption) and ``plain``
(int, not encrypted). Each query runs through the client (``cursor.execute`` + ``fetchall``,
results decrypted) on both columns, side by side; the ratio is encrypted / plaintext. The
plaintext query is answered by the database (SQLite by default); the encrypted one streams
the column's cells through the in-process enclave (simulated TEE), which decrypts them in
batches. Writes the "Enclave SQL" section of docs/BENCHMARKS.md.
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
from cleanroom.keystores import LocalKeyStore
from cleanroom.sql import AttestationSettings, Connection, QueryEngine, connect, simulated_enclave
from cleanroom.store import ColumnSpec, DatasetSchema, open_store
from cleanroom.tee import SimulatedLauncher

SCHEMA = DatasetSchema(
    table="Bench",
    columns=(ColumnSpec("enc", "int"), ColumnSpec("plain", "int", encrypted=False)),
)
BATCH = 100_000


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
            plain_s, plain_n = timings["plain"]
            enc_s, enc_n = timings["enc"]
            assert plain_n == enc_n, (label, plain_n, enc_n)
            if label.startswith("range"):
                assert enc_n == expected
            lines.append(
                f"| {label} | {enc_n:,} | {plain_s * 1000:,.0f} ms | {enc_s * 1000:,.0f} ms "
                f"| {enc_s / plain_s:.1f}× |"
            )
    backend = url.split(":", 1)[0]
    body = "\n".join(
        [
            f"`benchmarks/bench_sql.py --rows {args.rows}`: one table of {args.rows:,} random "
            "integers stored twice, as a randomized-encrypted `int` column and as a plaintext "
            f"`int` column; {backend} store; best of {args.repeat} after a warm-up. Each "
            "figure is the whole client call (`cursor.execute` + `fetchall`, results "
            "decrypted). The encrypted query streams every cell of the column through the "
            "in-process enclave (simulated TEE), which decrypts in batches of 65,536 with "
            "`CellCipher.decrypt_many`; the plaintext query is answered by the database.",
            "",
            "| query | rows returned | plaintext column | encrypted column | ratio |",
            "|---|---:|---:|---:|---:|",
            *lines,
            "",
            "The encrypted range query is bound by decrypting every cell of the column on one "
            "core (no enclave-enabled index yet): at the cell cipher's 300–500k cells/s on an "
            "idle core that is 2–3 s per million rows, so it stays above the 10× target on "
            "SQLite, whose plaintext scan takes a few hundred milliseconds. `TOP (n) … ORDER BY` "
            "keeps n candidates per enclave batch and costs about the same as the range query; a "
            "full `ORDER BY` decrypts twice (the enclave sorts, the client decrypts the rows).",
            "",
            f"Load: {load:.0f} s (encrypt and insert). Machine: {machine()}; load average "
            f"{min(loads):.1f}–{max(loads):.1f} during the queries (the machine is shared "
            "with other jobs; figures from a busy machine are slower than an idle one).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("Enclave SQL", body)


if __name__ == "__main__":
    main()
