"""The signed, hash-chained ledger: append, export, and every way of breaking it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from cleanroom.contract import SigningKey
from cleanroom.errors import LedgerError
from cleanroom.ledger import (
    Ledger,
    LedgerEntry,
    LedgerHead,
    ledger_ids,
    read_entries,
    read_jsonl,
    to_jsonl,
    verify_ledger,
)
from cleanroom.ledger.entries import ZERO_HASH, make_entry
from cleanroom.ledger.store import ledger_entries
from cleanroom.store import Store

CONTRACT = "c" * 64


def _filled(store: Store, key: SigningKey, n: int = 6) -> Ledger:
    ledger = Ledger.create(store, key, ledger_id="job-1", genesis={"contract_hash": CONTRACT})
    ledger.append("enclave.launch", {"measurement": "ab" * 48, "tee": "simulated"})
    ledger.append("attestation.accepted", {"simulated": True, "verifier": "local"})
    for party in ("alpha", "beta"):
        ledger.append("keys.released", {"party": party, "resource": "cek/medical_record"})
    for i in range(n - 5):
        ledger.append("scoring.usage", {"party": "gamma", "window": i, "requests": 3 * i})
    return ledger


def test_append_verify_and_genesis(store: Store, enclave_key: SigningKey) -> None:
    ledger = _filled(store, enclave_key)
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(6))
    assert entries[0].prev_hash == ZERO_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    genesis = entries[0].payload
    assert genesis["public_key"] == enclave_key.public_key.to_jwk()
    assert genesis["contract_hash"] == CONTRACT
    assert genesis["ledger_id"] == "job-1"
    verified = verify_ledger(entries, enclave_key.public_key, head=ledger.head())
    assert verified.count == 6
    assert verified.head_hash == entries[-1].hash
    assert verified.ledger_id == "job-1"
    assert verified.head_checked
    assert verified.warnings() == [
        "seq 2: a simulated TEE was accepted (insecure, development only)"
    ]
    assert ledger.verify().count == 6
    assert ledger_ids(store) == ["job-1"]


def test_jsonl_round_trip(store: Store, enclave_key: SigningKey, tmp_path: Path) -> None:
    ledger = _filled(store, enclave_key)
    path = tmp_path / "ledger.jsonl"
    assert ledger.export_jsonl(path) == 6
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    assert set(json.loads(lines[0])) == {
        "seq", "time", "kind", "payload", "prev_hash", "hash", "signature"
    }  # fmt: skip
    again = read_jsonl(path.read_text().splitlines())
    assert again == ledger.entries()
    stream = io.StringIO()
    ledger.export_jsonl(stream)
    assert stream.getvalue() == path.read_text() == to_jsonl(again)
    verify_ledger(again, enclave_key.public_key)


def test_entry_hash_is_sha256_of_rfc8785_body(enclave_key: SigningKey) -> None:
    import hashlib

    import rfc8785

    entry = make_entry(
        enclave_key,
        seq=0,
        time="2026-12-03T12:00:00.000000Z",
        kind="ledger.genesis",
        payload={"b": 1.0, "a": [1, "x"]},
        prev_hash=ZERO_HASH,
    )
    body = (
        b'{"kind":"ledger.genesis","payload":{"a":[1,"x"],"b":1},"prev_hash":"'
        + ZERO_HASH.encode()
        + b'","seq":0,"time":"2026-12-03T12:00:00.000000Z"}'
    )
    assert rfc8785.dumps(entry.body()) == body
    assert entry.hash == hashlib.sha256(body).hexdigest()


def _expect(entries: list[LedgerEntry], key: SigningKey, match: str, **kw: object) -> None:
    with pytest.raises(LedgerError, match=match):
        verify_ledger(entries, key.public_key, **kw)  # type: ignore[arg-type]


def test_tampered_payload_is_named(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    entries[3] = dataclasses.replace(entries[3], payload={"party": "mallory", "resource": "x"})
    _expect(entries, enclave_key, r"^seq 3: the signature does not verify")


def test_tampered_row_in_the_store_is_named(store: Store, enclave_key: SigningKey) -> None:
    ledger = _filled(store, enclave_key)
    with store.engine.begin() as conn:
        conn.execute(
            ledger_entries.update()
            .where(ledger_entries.c.seq == 4)
            .values(payload=json.dumps({"party": "beta", "resource": "cek/other"}))
        )
    with pytest.raises(LedgerError, match=r"^seq 4:"):
        ledger.verify()


def test_reordered_entries(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    entries[2], entries[3] = entries[3], entries[2]
    _expect(entries, enclave_key, r"^seq 2: expected seq 2, found seq 3")


def test_renumbered_reorder_breaks_the_chain(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    a, b = entries[2], entries[3]
    entries[2] = dataclasses.replace(b, seq=2)
    entries[3] = dataclasses.replace(a, seq=3)
    _expect(entries, enclave_key, r"^seq 2: prev_hash")


def test_deleted_middle_entry(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    del entries[3]
    _expect(entries, enclave_key, r"^seq 3: expected seq 3, found seq 4")


def test_truncated_tail_needs_the_signed_head(store: Store, enclave_key: SigningKey) -> None:
    ledger = _filled(store, enclave_key)
    head = ledger.head()
    cut = ledger.entries()[:4]
    # Without a head a prefix verifies: that is the limit of a hash chain.
    assert verify_ledger(cut, enclave_key.public_key).count == 4
    _expect(cut, enclave_key, r"^seq 4: missing .* covers 6 entries, only 4", head=head)
    # An older head still verifies a longer ledger (it proves the prefix it covers).
    older = LedgerHead.from_json(head.to_json())
    ledger.append("scoring.usage", {"party": "gamma", "window": 9, "requests": 1})
    assert verify_ledger(ledger.entries(), enclave_key.public_key, head=older).count == 7


def test_head_is_checked(store: Store, enclave_key: SigningKey) -> None:
    ledger = _filled(store, enclave_key)
    head = ledger.head()
    entries = ledger.entries()
    forged_count = dataclasses.replace(head, count=5)
    _expect(entries, enclave_key, r"^head: the signature", head=forged_count)
    other = Ledger.create(store, enclave_key, ledger_id="job-2")
    _expect(entries, enclave_key, r"^seq 0: not the entry", head=other.head())


def test_wrong_key_and_resigned_ledger(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    stranger = SigningKey.generate(enclave_key.algorithm)
    _expect(entries, stranger, r"^seq 0: the ledger is signed by another key")
    # An attacker re-signs a rewritten ledger with their own key, recorded in genesis.
    forged = Ledger.create(store, stranger, ledger_id="forged")
    forged.append("keys.released", {"party": "alpha"})
    _expect(forged.entries(), enclave_key, r"^seq 0: the ledger is signed by another key")
    # Entries of the right key spliced into another ledger break the chain.
    spliced = [*forged.entries()[:1], dataclasses.replace(entries[1])]
    _expect(spliced, stranger, r"^seq 1: prev_hash")


def test_signature_swapped_between_entries(store: Store, enclave_key: SigningKey) -> None:
    entries = _filled(store, enclave_key).entries()
    entries[2] = dataclasses.replace(entries[2], signature=entries[1].signature)
    _expect(entries, enclave_key, r"^seq 2: the signature does not verify")


def test_genesis_must_be_version_1(enclave_key: SigningKey) -> None:
    genesis = make_entry(
        enclave_key,
        seq=0,
        time="2026-12-03T12:00:00.000000Z",
        kind="ledger.genesis",
        payload={"format": 2, "public_key": enclave_key.public_key.to_jwk()},
        prev_hash=ZERO_HASH,
    )
    _expect([genesis], enclave_key, r"^seq 0: not a version 1 ledger")


def test_second_genesis_and_empty(store: Store, enclave_key: SigningKey) -> None:
    _expect([], enclave_key, "empty")
    ledger = _filled(store, enclave_key)
    with pytest.raises(LedgerError, match="only create"):
        ledger.append("ledger.genesis", {})
    entries = ledger.entries()
    _expect(entries[1:], enclave_key, "first entry is not a ledger.genesis")


def test_open_checks_the_key(store: Store, enclave_key: SigningKey) -> None:
    _filled(store, enclave_key)
    with pytest.raises(TypeError, match="create"):
        Ledger(store, "job-1", SigningKey.generate())
    reopened = Ledger.open(store, "job-1", enclave_key)
    entry = reopened.append("job.trained", {"rows": {"alpha": 100}})
    assert entry.seq == 6
    with pytest.raises(LedgerError, match="another key"):
        Ledger.open(store, "job-1", SigningKey.generate())
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger.open(store, "nope", enclave_key)
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.create(store, enclave_key, ledger_id="job-1")


def test_payload_and_kind_rules(store: Store, enclave_key: SigningKey) -> None:
    ledger = Ledger.create(store, enclave_key)
    for bad_kind in ("Job", "job", "job..x", "job.trained!"):
        with pytest.raises(LedgerError, match="kind"):
            ledger.append(bad_kind, {})
    with pytest.raises(LedgerError, match="canonicalizable"):
        ledger.append("job.trained", {"loss": float("nan")})
    with pytest.raises(LedgerError, match="canonicalizable"):
        ledger.append("job.trained", {"big": 2**60})
    with pytest.raises(LedgerError, match="beyond"):
        ledger.append("job.trained", {"big": 2.0**53})
    with pytest.raises(LedgerError, match="exceeds"):
        ledger.append("job.trained", {"blob": "x" * 70_000})
    with pytest.raises(LedgerError, match="JSON object"):
        ledger.append("job.trained", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="set by the ledger"):
        Ledger.create(store, enclave_key, genesis={"public_key": "mine"})
    assert len(ledger.entries()) == 1  # nothing was written by the failures


def test_concurrent_appends_never_fork(store: Store, enclave_key: SigningKey) -> None:
    ledger = Ledger.create(store, enclave_key, ledger_id="busy")
    errors: list[Exception] = []

    def work(worker: int) -> None:
        try:
            for i in range(5):
                ledger.append("scoring.usage", {"worker": worker, "i": i})
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert verify_ledger(ledger.entries(), enclave_key.public_key).count == 21


def test_jsonl_errors_name_the_line(store: Store, enclave_key: SigningKey) -> None:
    text = to_jsonl(_filled(store, enclave_key).entries())
    lines = text.splitlines()
    with pytest.raises(LedgerError, match="line 2: not JSON"):
        read_jsonl([lines[0], "{", *lines[2:]])
    record = json.loads(lines[1])
    record["hash"] = "0" * 64
    with pytest.raises(LedgerError, match="seq 1: the recorded hash"):
        read_jsonl([lines[0], json.dumps(record)])
    record = json.loads(lines[1])
    record["extra"] = 1
    with pytest.raises(LedgerError, match="line 2: the record does not have exactly"):
        read_jsonl([lines[0], json.dumps(record)])
    record = json.loads(lines[1])
    record["seq"] = True
    with pytest.raises(LedgerError, match="line 1: seq"):
        read_jsonl([json.dumps(record)])


def test_times_are_utc_microseconds(store: Store, enclave_key: SigningKey) -> None:
    ledger = Ledger.create(store, enclave_key)
    moment = dt.datetime(2026, 12, 3, 13, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    entry = ledger._append("job.started", {}, now=moment)
    assert entry.time == "2026-12-03T11:00:00.000005Z"
    assert ledger.entries()[1] == entry


def test_tables_live_beside_the_catalog(store: Store, enclave_key: SigningKey) -> None:
    Ledger.create(store, enclave_key)
    names = set(sa.inspect(store.engine).get_table_names())
    assert "ledger_entries" in names
    assert "column_master_keys" in names


@contextmanager
def _write_transactions(store: Store) -> Iterator[list[object]]:
    """Collects every write transaction begun on the store's engine while the block runs."""
    writes: list[object] = []

    def on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("cleanroom_write"):
            writes.append(conn)

    sa.event.listen(store.engine, "begin", on_begin)
    try:
        yield writes
    finally:
        sa.event.remove(store.engine, "begin", on_begin)


def test_reads_are_pure_reads(store: Store, enclave_key: SigningKey) -> None:
    ledger = _filled(store, enclave_key)
    with _write_transactions(store) as writes:
        assert len(read_entries(store, "job-1")) == 6
        assert ledger.entries() == read_entries(store, "job-1")
        assert len(read_entries(store, "job-1", limit=1)) == 1
        assert ledger_ids(store) == ["job-1"]
        reopened = Ledger.open(store, "job-1", enclave_key)
        assert reopened.verify().count == 6
        reopened.head()
    assert writes == []
    with _write_transactions(store) as writes:
        reopened.append("job.trained", {"rows": {"alpha": 100}})
    assert len(writes) == 1


def test_a_ledger_that_does_not_exist_is_named(store: Store, enclave_key: SigningKey) -> None:
    # Before any ledger: looking creates nothing and says what is missing.
    with _write_transactions(store) as writes:
        assert ledger_ids(store) == []
        with pytest.raises(LedgerError, match=r"^no ledger 'nope' in the store$"):
            read_entries(store, "nope")
        with pytest.raises(LedgerError, match=r"^no ledger 'nope' in the store$"):
            Ledger.open(store, "nope", enclave_key)
    assert writes == []
    assert "ledger_entries" not in sa.inspect(store.engine).get_table_names()
    _filled(store, enclave_key)
    with pytest.raises(LedgerError, match=r"^no ledger 'nope' in the store$"):
        read_entries(store, "nope")
