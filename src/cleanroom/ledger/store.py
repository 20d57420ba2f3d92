"""The ledger kept in the store: append-only, one table, many ledgers side by side.

Table ``ledger_entries`` (own :data:`metadata`; :meth:`Ledger.create` creates it in the
transaction that writes the genesis entry, or :func:`create_all` ahead of time; reads
never create it):
``(ledger_id, seq)`` primary key, ``time``, ``kind``, ``payload`` (RFC 8785 text),
``prev_hash``, ``entry_hash``, ``signature``. This API never updates or deletes a row;
the operator could, and :func:`~cleanroom.ledger.verify_ledger` (with a signed head for
the tail) is how anyone finds out.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cleanroom.contract.keys import SigningKey, VerifyingKey
from cleanroom.errors import LedgerError
from cleanroom.ledger.entries import (
    FORMAT_VERSION,
    GENESIS_KIND,
    ZERO_HASH,
    LedgerEntry,
    LedgerHead,
    VerifiedLedger,
    format_time,
    genesis_key,
    make_entry,
    sign_head,
    to_jsonl,
    verify_ledger,
)
from cleanroom.store import Store, storage_errors, utc_now

metadata = sa.MetaData()

_APPEND_ATTEMPTS = 5
# Only create() and open() hold this, so only they build a Ledger.
_BUILD = object()

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("ledger_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
)


def create_all(store: Store) -> None:
    """Create the ledger table in ``store`` if it does not exist (idempotent)."""
    with store.write("creating the ledger table") as conn:
        metadata.create_all(conn)


class Ledger:
    """An append-only, hash-chained, signed ledger in a :class:`~cleanroom.store.Store`.

    Build with :meth:`create` (writes the genesis entry recording the public key) or
    :meth:`open` (continues a ledger signed by the same key). Guarantees: every entry it
    writes is chained to the previous one and signed; appends are serialized by the
    database (a concurrent append with the same ``seq`` fails, it never forks the chain).
    """

    def __init__(
        self, store: Store, ledger_id: str, signing_key: SigningKey, *, _token: object = None
    ) -> None:
        if _token is not _BUILD:
            raise TypeError("use Ledger.create() or Ledger.open(), which check the genesis entry")
        self._store = store
        self._id = ledger_id
        self._key = signing_key

    def __repr__(self) -> str:
        return f"Ledger({self._id!r}, {self._key.public_key!r})"

    @classmethod
    def create(
        cls,
        store: Store,
        signing_key: SigningKey,
        *,
        ledger_id: str | None = None,
        genesis: Mapping[str, Any] | None = None,
    ) -> Ledger:
        """Start a new ledger; ``genesis`` adds facts to entry 0 (e.g. the contract hash)."""
        lid = ledger_id or uuid.uuid4().hex
        _check_id(lid)
        extra = dict(genesis or {})
        reserved = {"ledger_id", "public_key", "algorithm", "format"} & set(extra)
        if reserved:
            raise LedgerError(f"genesis members {sorted(reserved)} are set by the ledger")
        payload = {
            **extra,
            "algorithm": signing_key.algorithm,
            "format": FORMAT_VERSION,
            "ledger_id": lid,
            "public_key": signing_key.public_key.to_jwk(),
        }
        ledger = cls(store, lid, signing_key, _token=_BUILD)
        with store.write("starting the ledger") as conn:
            metadata.create_all(conn)  # the one place that creates the table
            if ledger._last(conn) is not None:
                raise LedgerError(f"ledger {lid!r} already exists")
            ledger._insert(conn, 0, GENESIS_KIND, payload, ZERO_HASH, utc_now())
        return ledger

    @classmethod
    def open(cls, store: Store, ledger_id: str, signing_key: SigningKey) -> Ledger:
        """Continue an existing ledger; refuses a key other than the one in its genesis
        (:class:`LedgerError` names a ledger that is not in the store)."""
        first = read_entries(store, ledger_id, limit=1)
        if genesis_key(first[0]) != signing_key.public_key:
            raise LedgerError(f"ledger {ledger_id!r} is signed by another key")
        return cls(store, ledger_id, signing_key, _token=_BUILD)

    @property
    def ledger_id(self) -> str:
        """This ledger's id (recorded in its genesis entry)."""
        return self._id

    @property
    def public_key(self) -> VerifyingKey:
        """The key that verifies every entry."""
        return self._key.public_key

    def append(self, kind: str, payload: Mapping[str, Any]) -> LedgerEntry:
        """Append a signed entry. ``payload`` holds counts, names and digests — no records."""
        if kind == GENESIS_KIND:
            raise LedgerError("only create() writes the genesis entry")
        return self._append(kind, payload, now=utc_now())

    def _append(self, kind: str, payload: Mapping[str, Any], *, now: dt.datetime) -> LedgerEntry:
        # Appends are serialized (see _append_once); should a writer that bypasses the
        # lock collide on (ledger_id, seq), re-read the head and try again.
        for _attempt in range(_APPEND_ATTEMPTS - 1):
            try:
                return self._append_once(kind, payload, now)
            except sa.exc.IntegrityError:
                continue
        with storage_errors("appending to the ledger"):
            return self._append_once(kind, payload, now)

    def _append_once(self, kind: str, payload: Mapping[str, Any], now: dt.datetime) -> LedgerEntry:
        with self._store.writing() as conn:
            if conn.dialect.name == "postgresql":
                # Serialize appends to this ledger until commit (SQLite already holds
                # the database write lock: BEGIN IMMEDIATE).
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(self._id))))
            last = self._last(conn)
            if last is None:
                raise LedgerError(f"no ledger {self._id!r} in the store")
            seq, prev_hash = last
            return self._insert(conn, seq + 1, kind, payload, prev_hash, now)

    def entries(self) -> list[LedgerEntry]:
        """Every entry, in order (as stored: verify with :meth:`verify`)."""
        return read_entries(self._store, self._id)

    def head(self, entries: Sequence[LedgerEntry] | None = None) -> LedgerHead:
        """A signed head over every entry now in the ledger (for receipts and answers);
        pass ``entries`` when you have just read them (:meth:`entries`)."""
        current = self.entries() if entries is None else entries
        return sign_head(self._key, current, time=format_time(utc_now()))

    def verify(self) -> VerifiedLedger:
        """:func:`verify_ledger` over the stored entries with this ledger's key."""
        return verify_ledger(self.entries(), self.public_key)

    def export_jsonl(self, target: str | os.PathLike[str] | IO[str]) -> int:
        """Write the ledger as JSON Lines to a path or a text stream; returns the count."""
        entries = self.entries()
        text = to_jsonl(entries)
        if isinstance(target, str | os.PathLike):
            Path(target).write_text(text, encoding="utf-8")
        else:
            target.write(text)
        return len(entries)

    # -- helpers --------------------------------------------------------------------------

    def _last(self, conn: Connection) -> tuple[int, str] | None:
        row = conn.execute(
            sa.select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
            .where(ledger_entries.c.ledger_id == self._id)
            .order_by(ledger_entries.c.seq.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def _insert(
        self,
        conn: Connection,
        seq: int,
        kind: str,
        payload: Mapping[str, Any],
        prev_hash: str,
        now: dt.datetime,
    ) -> LedgerEntry:
        entry = make_entry(
            self._key,
            seq=seq,
            time=format_time(now),
            kind=kind,
            payload=payload,
            prev_hash=prev_hash,
        )
        conn.execute(
            ledger_entries.insert().values(
                ledger_id=self._id,
                seq=entry.seq,
                time=entry.time,
                kind=entry.kind,
                payload=json.dumps(dict(entry.payload), sort_keys=True, ensure_ascii=False),
                prev_hash=entry.prev_hash,
                entry_hash=entry.hash,
                signature=entry.signature,
            )
        )
        return entry


def read_entries(store: Store, ledger_id: str, *, limit: int | None = None) -> list[LedgerEntry]:
    """A ledger's stored entries in ``seq`` order (at most ``limit``), without verifying
    them. A pure read; :class:`LedgerError` if the store holds no ledger ``ledger_id``."""
    query = (
        sa.select(
            ledger_entries.c.seq,
            ledger_entries.c.time,
            ledger_entries.c.kind,
            ledger_entries.c.payload,
            ledger_entries.c.prev_hash,
            ledger_entries.c.signature,
        )
        .where(ledger_entries.c.ledger_id == ledger_id)
        .order_by(ledger_entries.c.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    with store.read("reading the ledger") as conn:
        rows = conn.execute(query).all() if _has_table(conn) else []
    if not rows:
        raise LedgerError(f"no ledger {ledger_id!r} in the store")
    entries = []
    for seq, time, kind, payload, prev_hash, signature in rows:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            raise LedgerError(f"seq {seq}: the stored payload is not JSON") from None
        entries.append(LedgerEntry(int(seq), time, kind, data, prev_hash, signature))
    return entries


def ledger_ids(store: Store) -> list[str]:
    """The ids of every ledger in the store (none before the first :meth:`Ledger.create`)."""
    query = sa.select(ledger_entries.c.ledger_id).where(ledger_entries.c.seq == 0)
    with store.read("listing ledgers") as conn:
        if not _has_table(conn):
            return []
        return sorted(str(row[0]) for row in conn.execute(query))


def _has_table(conn: Connection) -> bool:
    # A catalog query inside the read transaction: the read stays a read (no CREATE).
    return sa.inspect(conn).has_table(ledger_entries.name)


def _check_id(ledger_id: str) -> None:
    ok = isinstance(ledger_id, str) and 1 <= len(ledger_id) <= 64
    if not ok or not all(c.isalnum() or c in "-_." for c in ledger_id):
        raise LedgerError("a ledger id is 1-64 characters of letters, digits, '-', '_' or '.'")


__all__ = ["Ledger", "create_all", "ledger_entries", "ledger_ids", "metadata", "read_entries"]
