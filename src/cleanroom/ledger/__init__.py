"""The audit ledger: append-only, hash-chained, every entry signed by the enclave.

Each entry ``{seq, time, kind, payload, prev_hash}`` is hashed as the SHA-256 of its
RFC 8785 canonical JSON and signed (Ed25519 or ECDSA P-256) by the enclave's key, whose
public half is recorded in entry 0. :class:`Ledger` keeps it in the store;
:func:`verify_ledger` checks an exported copy offline, and a signed :class:`LedgerHead`
lets a verifier detect a truncated tail. See ``docs/ledger.md``.
"""

from cleanroom.ledger.entries import (
    GENESIS_KIND,
    KNOWN_KINDS,
    MAX_PAYLOAD_BYTES,
    LedgerEntry,
    LedgerHead,
    VerifiedLedger,
    read_jsonl,
    to_jsonl,
    verify_ledger,
)
from cleanroom.ledger.store import Ledger, ledger_ids, read_entries

__all__ = [
    "GENESIS_KIND",
    "KNOWN_KINDS",
    "MAX_PAYLOAD_BYTES",
    "Ledger",
    "LedgerEntry",
    "LedgerHead",
    "VerifiedLedger",
    "ledger_ids",
    "read_entries",
    "read_jsonl",
    "to_jsonl",
    "verify_ledger",
]
