"""Import speed: the same MedicalRecords encrypted and in plaintext, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_import.py [--records N] [--repeat R] [--postgres URL]

Each run imports one CSV file through ``PartyClient.import_csv`` — parse, validate against
the schema, (normalize and encrypt), and load in one transaction with the driver's
``executemany`` — into a fresh table. Encryption runs on ``CellWorkers`` processes (one per
core, at most 4), each batch of 10,000 rows as soon as it is validated, so it overlaps the
validation of later batches and the insert of earlier ones; "serial" is the same import with
``workers=0``. "plaintext" is the same schema with every column stored in clear, so the
ratio is the whole cost of Always Encrypted on the import path.
PostgreSQL uses ``--postgres`` or ``CLEANROOM_TEST_POSTGRES_URL`` (a private schema,
dropped afterwards); without either it is left out. Writes the "Import" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sqlalchemy as sa

from _report import machine, write_section
from cleanroom.client import PartyClient
from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.crypto.keys import ColumnEncryptionKey
from cleanroom.crypto.normalize import normalize
from cleanroom.crypto.parallel import default_workers
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetSchema, medical_record_schema, open_store


def write_records(path: Path, count: int, seed: int = 0) -> None:
    """``count`` plausible MedicalRecords (10 % of ``smoker`` missing) as CSV."""
    rng = random.Random(seed)
    schema = medical_record_schema()
    lines = [",".join(schema.column_names)]
    for _ in range(count):
        smoker = "" if rng.random() < 0.1 else str(rng.randint(0, 1))
        lines.append(
            f"{rng.randint(0, 4)},{rng.randint(29, 90)},{rng.randint(0, 1)},{smoker},"
            f"{rng.randint(1, 4)},{rng.randint(94, 200)},{rng.randint(126, 564)},"
            f"{rng.randint(0, 1)},{rng.randint(71, 202)}"
        )
    path.write_text("\n".join(lines) + "\n")


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    schema = f"cr_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def time_import(
    url: str, keys: Path, schema: DatasetSchema, csv: Path, party: str, workers: int | None = None
) -> float:
    store = open_store(url)
    try:
        client = PartyClient(store, LocalKeyStore(keys), party=party, workers=workers)
        client.create_keys()
        client.create_dataset(schema)
        start = time.perf_counter()
        client.import_csv(csv, dataset=schema.table)
        return time.perf_counter() - start
    finally:
        store.close()


def cell_seconds(records: int, repeat: int) -> float:
    """Best time to encrypt the ``9 * records`` cells of an import, and nothing else."""
    cipher = CellCipher(ColumnEncryptionKey.generate(), EncryptionType.RANDOMIZED)
    rng = random.Random(1)
    column = [normalize(rng.randint(0, 255), "tinyint") for _ in range(records)]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(9):
            for first in range(0, records, 10_000):
                cipher.encrypt_many(column[first : first + 10_000])
        best = min(best, time.perf_counter() - start)
    return best


def store_seconds(url: str, records: int, repeat: int, root: Path) -> float:
    """Best time for the store alone to load ``records`` rows of 9 ready-made 65-byte cells."""
    cipher = CellCipher(ColumnEncryptionKey.generate(), EncryptionType.RANDOMIZED)
    rng = random.Random(2)
    cells = cipher.encrypt_many([normalize(rng.randint(0, 255), "tinyint") for _ in range(records)])
    schema = medical_record_schema()
    best = float("inf")
    for attempt in range(repeat):
        party = f"cells_{attempt}"
        store = open_store(url.format(party=party))
        try:
            client = PartyClient(store, LocalKeyStore(root / party), party=party)
            client.create_keys()
            info = client.create_dataset(schema)
            batches = [
                {name: cells[start : start + 10_000] for name in schema.column_names}
                for start in range(0, records, 10_000)
            ]
            start = time.perf_counter()
            store.load(info, batches)
            best = min(best, time.perf_counter() - start)
        finally:
            store.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("CLEANROOM_TEST_POSTGRES_URL"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    encrypted = medical_record_schema()
    # "serial": the same encrypted import with every cell encrypted in this process.
    modes = {"plaintext": encrypted.plaintext(), "encrypted": encrypted, "serial": encrypted}
    results: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = root / "records.csv"
        write_records(csv, args.records)
        backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
        run = 0
        for _ in range(args.repeat):
            for backend in backends:
                # Alternate the modes so that background load hits both alike.
                for mode, schema in modes.items():
                    run += 1
                    party = f"bench_{run}"
                    workers = 0 if mode == "serial" else None
                    if backend == "sqlite":
                        url = f"sqlite:///{root / f'{party}.db'}"
                        seconds = time_import(url, root / party, schema, csv, party, workers)
                    else:
                        with postgres_url(args.postgres) as url:
                            seconds = time_import(url, root / party, schema, csv, party, workers)
                    rate = args.records / seconds
                    best = results.get((backend, mode), 0.0)
                    results[(backend, mode)] = max(best, rate)
                    print(f"{backend:10} {mode:9} {rate:12,.0f} rows/s", flush=True)

        cells = cell_seconds(args.records, args.repeat)
        sqlite_cells = store_seconds(
            f"sqlite:///{root}/{{party}}.db", args.records, args.repeat, root
        )
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_import.py --records {args.records} "
        f"--repeat {args.repeat}`",
        "",
        f"Machine: {machine()}, load average {os.getloadavg()[0]:.1f} at the end (other "
        f"jobs share the cores); best of {args.repeat} runs; {args.records:,} MedicalRecords "
        "(9 columns) from one CSV file through `PartyClient.import_csv` — parse, validate, "
        '(normalize, encrypt), load in one transaction with `executemany`. "encrypted" '
        f"encrypts on {default_workers()} `CellWorkers` processes (forked per import; one per "
        "core, at most 4), each batch of 10,000 rows as soon as it is validated, overlapping "
        'the validation of later batches and the insert of earlier ones; "in one process" '
        "is the same import with `workers=0` (every cell encrypted by the importing process).",
        "",
        "| store | plaintext | encrypted (9 columns, randomized) | encrypted / plaintext "
        "| in one process | in one process / plaintext |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend in ("sqlite", "postgresql"):
        if (backend, "plaintext") not in results:
            continue
        plain, enc = results[(backend, "plaintext")], results[(backend, "encrypted")]
        serial = results[(backend, "serial")]
        lines.append(
            f"| {backend} | {plain:,.0f} rows/s | {enc:,.0f} rows/s | {enc / plain:.2f} "
            f"| {serial:,.0f} rows/s | {serial / plain:.2f} |"
        )
    sqlite_plain = args.records / results[("sqlite", "plaintext")]
    ratios = {
        backend: results[(backend, "encrypted")] / results[(backend, "plaintext")]
        for backend in ("sqlite", "postgresql")
        if (backend, "plaintext") in results
    }
    met = [b for b, r in ratios.items() if r >= 1 / 3]
    missed = [f"{b} ({r:.3f})" for b, r in ratios.items() if r < 1 / 3]
    verdict = "In this run it is met on " + (", ".join(met) or "no store")
    verdict += f" and missed on {', '.join(missed)}." if missed else "."
    lines += [
        "",
        "Target: encrypted at least 1/3 of the plaintext speed. An encrypted row is 9 cells "
        f"of 65 bytes (BLOB/BYTEA) instead of 9 small integers. {verdict}",
        "",
        f"Where the time goes (SQLite, same run): the whole plaintext import takes "
        f"{sqlite_plain:.2f} s. Encrypting the {9 * args.records:,} cells on one core "
        f"(`encrypt_many`, 10,000 per call) takes {cells:.2f} s; per-cell HMAC-SHA256 "
        "dominates it, and the workers take it off the importing process. Storing "
        f"{args.records:,} rows of ready-made cells (`Store.load` alone: SQLite inserting "
        f"and committing about {args.records * 9 * 65 / 1e6:.0f} MB of BLOBs) takes "
        f"{sqlite_cells:.2f} s ({sqlite_cells / sqlite_plain:.1f}× the whole plaintext "
        "import); with the encryption off the importing process, that BLOB insert is most "
        "of what is left of the gap. On PostgreSQL the database costs more for both, so the "
        "ratio is higher.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Import", body)


if __name__ == "__main__":
    main()
