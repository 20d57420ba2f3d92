"""The store never receives plaintext: scan the raw SQLite files, a pg_dump, and the logs."""

import logging
import os
import struct
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from cleanroom.client import PartyClient
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import DatasetSchema, open_store

# 40 characters, found nowhere else.
MARKER = "ZQX7-leak-canary-4f1e9b2c-PLAINTEXT-ZQX7"
CONTROL = "CTRL-visible-on-purpose-8d3a77e1-CTRL-01"  # a plaintext column: must be found
AGE = 1_987_654_321
BIG = 7_311_942_880_555_123
SCHEMA = DatasetSchema.from_json(
    """{"table": "Canary", "columns": [
        {"name": "note", "type": "nvarchar(64)"},
        {"name": "code", "type": "varchar(64)", "encryption": "deterministic"},
        {"name": "age", "type": "int"},
        {"name": "big", "type": "bigint", "encryption": "deterministic"},
        {"name": "visible", "type": "nvarchar(64)", "encrypted": false}
    ]}"""
)


def forms(text: str) -> list[bytes]:
    return [text.encode("utf-8"), text.encode("utf-16-le")]


def number_forms(value: int) -> list[bytes]:
    # As text, and as the normalized plaintext (int64 LE) that gets encrypted.
    return [str(value).encode(), str(value).encode("utf-16-le"), struct.pack("<q", value)]


SECRETS = [*forms(MARKER), *forms(MARKER[:20]), *number_forms(AGE), *number_forms(BIG)]


def secrets_found(blob: bytes) -> list[bytes]:
    hexed = blob.lower()
    found = [s for s in SECRETS if s in blob]
    # pg_dump writes bytea as hex text: look for the hex of every form too.
    found += [s for s in SECRETS if len(s) >= 8 and s.hex().encode() in hexed]
    return found


def load_canaries(url: str, key_dir: Path) -> PartyClient:
    client = PartyClient(open_store(url), LocalKeyStore(key_dir), party="hospital_leak")
    client.create_keys()
    client.create_dataset(SCHEMA)
    records = [
        {"note": MARKER, "code": MARKER, "age": AGE, "big": BIG, "visible": CONTROL}
        for _ in range(50)
    ]
    records.append({"note": None, "code": None, "age": None, "big": None, "visible": None})
    client.import_records(records, dataset="Canary")
    assert client.read("Canary", where={"code": MARKER, "big": BIG})[0]["note"] == MARKER
    return client


def test_sqlite_file_holds_no_plaintext(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    database = tmp_path / "store.db"
    client = load_canaries(f"sqlite:///{database}", tmp_path / "keys")
    files = sorted(tmp_path.glob("store.db*"))  # the database, its WAL and shared memory
    raw = b"".join(p.read_bytes() for p in files)
    assert CONTROL.encode() in raw or CONTROL.encode("utf-16-le") in raw  # the scan can see
    assert secrets_found(raw) == []
    client.store.close()
    raw = database.read_bytes()  # after the WAL is checkpointed into the file
    assert secrets_found(raw) == []
    assert MARKER not in caplog.text
    assert str(AGE) not in caplog.text
    assert str(BIG) not in caplog.text


@pytest.mark.postgres
def test_pg_dump_holds_no_plaintext(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, postgres_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = sa.engine.make_url(postgres_url)
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    client = load_canaries(postgres_url, tmp_path / "keys")
    client.store.close()
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    dump = subprocess.run(
        [
            "pg_dump",
            "--host",
            url.host or "127.0.0.1",
            "--port",
            str(url.port or 5432),
            "--username",
            url.username or "postgres",
            "--schema",
            schema,
            "--no-password",
            url.database or "postgres",
        ],
        capture_output=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    assert b"ds_hospital_leak_canary" in dump
    assert CONTROL.encode() in dump  # the scan can see plaintext where there is some
    assert secrets_found(dump) == []
    assert MARKER not in caplog.text
    assert str(AGE) not in caplog.text
