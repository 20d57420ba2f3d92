"""Ledger entries, signed heads, and offline verification.

Format (version 1), all hashes lowercase hex SHA-256, all JSON canonicalized by RFC 8785:

* an entry's **body** is ``{"kind", "payload", "prev_hash", "seq", "time"}``: ``seq`` counts
  from 0 without gaps, ``time`` is UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``payload`` a JSON
  object (counts, names, digests — never a record), ``prev_hash`` the previous entry's hash
  (64 zeros for seq 0);
* the **entry hash** is ``SHA-256(RFC8785(body))``;
* the **signature** is the enclave key's signature (Ed25519, or ECDSA P-256 as ``r || s``)
  of ``RFC8785({"entry_hash": H, "purpose": "cleanroom.ledger.entry/1"})``, base64url;
* entry 0 has kind ``ledger.genesis`` and records the signing key:
  ``payload = {"ledger_id", "public_key": <JWK>, "algorithm", ...}``;
* a **signed head** ``{"count", "head_hash", "time"}`` signed over
  ``RFC8785({"count", "head_hash", "purpose": "cleanroom.ledger.head/1", "time"})`` commits to
  the first ``count`` entries. A hash chain alone cannot show that entries were cut off
  the end; a head obtained separately (in a receipt, or the enclave's last answer) can.

JSON Lines export: one entry per line, ``{"hash", "kind", "payload", "prev_hash", "seq",
"signature", "time"}`` (``hash`` is redundant and checked).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from cleanroom.contract.keys import (
    SigningKey,
    VerifyingKey,
    b64url_decode,
    b64url_encode,
    statement,
)
from cleanroom.errors import ContractError, LedgerError, SignatureInvalid

FORMAT_VERSION = 1
ENTRY_PURPOSE = "cleanroom.ledger.entry/1"
HEAD_PURPOSE = "cleanroom.ledger.head/1"
GENESIS_KIND = "ledger.genesis"
ZERO_HASH = "0" * 64
#: Kinds the enclave writes (any dotted lowercase name is accepted).
KNOWN_KINDS: tuple[str, ...] = (
    GENESIS_KIND,
    "enclave.launch",
    "attestation.accepted",
    "keys.released",
    "job.started",
    "job.rows",
    "job.trained",
    "receipt.signed",
    "model.sealed",
    "metrics.sealed",
    "scoring.usage",
)
#: Largest canonical payload accepted (bytes): the ledger records facts, not data.
MAX_PAYLOAD_BYTES = 64 * 1024

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def format_time(moment: dt.datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as it will be hashed and stored (round-tripped through RFC 8785).

    :class:`LedgerError` if it is not a JSON object RFC 8785 can represent, or too large.
    """
    if not isinstance(payload, Mapping):
        raise LedgerError("a ledger payload must be a JSON object")
    try:
        data = rfc8785.dumps(dict(payload))
    except (TypeError, ValueError, rfc8785.CanonicalizationError):
        raise LedgerError("the ledger payload is not canonicalizable JSON data") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LedgerError(f"the ledger payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    result: dict[str, Any] = json.loads(data)
    # An integral float of 2**53 or more prints as an integer RFC 8785 then refuses to read
    # back: refuse it now rather than write an entry that cannot be hashed again.
    try:
        stable = rfc8785.dumps(result) == data
    except rfc8785.CanonicalizationError:
        stable = False
    if not stable:
        raise LedgerError("the ledger payload holds a number beyond ±2**53 (not portable JSON)")
    return result


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a dotted lowercase name (``job.trained``), else raise."""
    if not isinstance(kind, str) or len(kind) > 64 or not _KIND.match(kind):
        raise LedgerError("a ledger entry kind is a dotted lowercase name, e.g. job.trained")
    return kind


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One signed entry. :attr:`hash` is recomputed from the body, never trusted."""

    seq: int
    time: str
    kind: str
    payload: Mapping[str, Any] = field(hash=False)
    prev_hash: str
    signature: str

    def body(self) -> dict[str, Any]:
        """What the entry hash covers."""
        return {
            "kind": self.kind,
            "payload": dict(self.payload),
            "prev_hash": self.prev_hash,
            "seq": self.seq,
            "time": self.time,
        }

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the RFC 8785 canonical JSON of :meth:`body`."""
        try:
            return hashlib.sha256(rfc8785.dumps(self.body())).hexdigest()
        except (TypeError, ValueError, rfc8785.CanonicalizationError):
            raise LedgerError(f"seq {self.seq}: the entry is not canonicalizable") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines record (body, ``hash`` and ``signature``)."""
        return {**self.body(), "hash": self.hash, "signature": self.signature}

    @classmethod
    def from_json(cls, record: Mapping[str, Any], *, where: str = "entry") -> LedgerEntry:
        """Parse a JSON Lines record; :class:`LedgerError` on any malformed member.

        A ``hash`` member, when present, must equal the recomputed hash.
        """
        keys = set(record)
        expected = {"seq", "time", "kind", "payload", "prev_hash", "signature"}
        if not expected <= keys or not keys <= expected | {"hash"}:
            raise LedgerError(f"{where}: the record does not have exactly the ledger fields")
        seq = record["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise LedgerError(f"{where}: seq is not a non-negative integer")
        checks = (
            isinstance(record["time"], str) and _TIME.match(record["time"]),
            isinstance(record["kind"], str) and _KIND.match(record["kind"]),
            isinstance(record["payload"], dict),
            isinstance(record["prev_hash"], str) and _HASH.match(record["prev_hash"]),
            isinstance(record["signature"], str),
        )
        if not all(checks):
            raise LedgerError(f"seq {seq}: malformed entry")
        entry = cls(
            seq=seq,
            time=record["time"],
            kind=record["kind"],
            payload=record["payload"],
            prev_hash=record["prev_hash"],
            signature=record["signature"],
        )
        if "hash" in record and not hmac.compare_digest(str(record["hash"]), entry.hash):
            raise LedgerError(f"seq {seq}: the recorded hash is not the hash of the entry")
        return entry


def entry_message(entry_hash: str) -> bytes:
    """The bytes the enclave signs for an entry."""
    return statement(ENTRY_PURPOSE, {"entry_hash": entry_hash})


def head_message(count: int, head_hash: str, time: str) -> bytes:
    """The bytes the enclave signs for a head."""
    return statement(HEAD_PURPOSE, {"count": count, "head_hash": head_hash, "time": time})


def make_entry(
    key: SigningKey,
    *,
    seq: int,
    time: str,
    kind: str,
    payload: Mapping[str, Any],
    prev_hash: str,
) -> LedgerEntry:
    """Build and sign an entry (the store-backed :class:`~cleanroom.ledger.Ledger` calls this)."""
    unsigned = LedgerEntry(seq, time, check_kind(kind), canonical_payload(payload), prev_hash, "")
    signature = b64url_encode(key.sign(entry_message(unsigned.hash)))
    return LedgerEntry(seq, time, unsigned.kind, unsigned.payload, prev_hash, signature)


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """A signed statement that the ledger had ``count`` entries, the last hashing to
    ``head_hash``, at ``time``."""

    count: int
    head_hash: str
    time: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        """The head as a JSON object."""
        return {
            "count": self.count,
            "head_hash": self.head_hash,
            "time": self.time,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> LedgerHead:
        """Parse a head; :class:`LedgerError` if malformed."""
        if set(record) != {"count", "head_hash", "time", "signature"}:
            raise LedgerError("head: the record does not have exactly the head fields")
        count, head_hash = record["count"], record["head_hash"]
        ok = (
            isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 1
            and isinstance(head_hash, str)
            and _HASH.match(head_hash)
            and isinstance(record["time"], str)
            and _TIME.match(record["time"])
            and isinstance(record["signature"], str)
        )
        if not ok:
            raise LedgerError("head: malformed")
        return cls(count, head_hash, record["time"], record["signature"])


def sign_head(key: SigningKey, entries: Sequence[LedgerEntry], *, time: str) -> LedgerHead:
    """Sign a head over ``entries`` (all of them, in order)."""
    if not entries:
        raise LedgerError("an empty ledger has no head")
    head_hash = entries[-1].hash
    signature = b64url_encode(key.sign(head_message(len(entries), head_hash, time)))
    return LedgerHead(len(entries), head_hash, time, signature)


@dataclass(frozen=True, slots=True)
class VerifiedLedger:
    """The result of :func:`verify_ledger`: only built when every check passed."""

    ledger_id: str
    count: int
    head_hash: str
    public_key: VerifyingKey
    entries: tuple[LedgerEntry, ...]
    head_checked: bool

    def warnings(self) -> list[str]:
        """Entries that deserve a loud note: simulated (insecure) attestations accepted."""
        return [
            f"seq {e.seq}: a simulated TEE was accepted (insecure, development only)"
            for e in self.entries
            if e.kind == "attestation.accepted" and e.payload.get("simulated") is True
        ]


def genesis_key(entry: LedgerEntry) -> VerifyingKey:
    """The signing key recorded in a genesis entry."""
    if entry.seq != 0 or entry.kind != GENESIS_KIND:
        raise LedgerError(f"seq {entry.seq}: the first entry is not a {GENESIS_KIND} entry")
    if entry.payload.get("format") != FORMAT_VERSION:
        raise LedgerError(f"seq 0: not a version {FORMAT_VERSION} ledger")
    recorded = entry.payload.get("public_key")
    if not isinstance(recorded, dict):
        raise LedgerError("seq 0: the genesis entry records no public key")
    try:
        return VerifyingKey.from_jwk(recorded)
    except ContractError:
        raise LedgerError("seq 0: the genesis public key is malformed") from None


def verify_ledger(
    entries: Iterable[LedgerEntry],
    public_key: VerifyingKey,
    *,
    head: LedgerHead | None = None,
) -> VerifiedLedger:
    """Check a ledger offline; :class:`LedgerError` naming the first bad seq.

    Checks: entry 0 is the genesis entry and records ``public_key`` (the trust anchor
    must come from elsewhere — a receipt, an attestation — not from the ledger itself);
    ``seq`` runs 0, 1, 2… (a dropped or reordered entry fails at the first gap); each
    ``prev_hash`` is the previous entry's hash; each signature verifies under
    ``public_key``. With ``head``, its signature verifies and its ``head_hash`` is the hash
    of entry ``count - 1`` — so entries cut off the end, up to that head, are detected.
    Without a head, only the presented prefix is proven.
    """
    items = tuple(entries)
    if not items:
        raise LedgerError("the ledger is empty")
    if not hmac.compare_digest(
        genesis_key(items[0]).fingerprint.encode(), public_key.fingerprint.encode()
    ):
        raise LedgerError("seq 0: the ledger is signed by another key than the expected one")
    previous = ZERO_HASH
    for position, entry in enumerate(items):
        if entry.seq != position:
            raise LedgerError(
                f"seq {position}: expected seq {position}, found seq {entry.seq} "
                "(an entry was dropped, inserted or reordered)"
            )
        if position > 0 and entry.kind == GENESIS_KIND:
            raise LedgerError(f"seq {position}: a second genesis entry")
        if not hmac.compare_digest(entry.prev_hash.encode(), previous.encode()):
            raise LedgerError(f"seq {position}: prev_hash is not the hash of the previous entry")
        entry_hash = entry.hash
        try:
            public_key.verify(b64url_decode(entry.signature), entry_message(entry_hash))
        except (ValueError, SignatureInvalid):
            raise LedgerError(f"seq {position}: the signature does not verify") from None
        previous = entry_hash
    if head is not None:
        _check_head(items, public_key, head)
    ledger_id = items[0].payload.get("ledger_id")
    return VerifiedLedger(
        ledger_id=ledger_id if isinstance(ledger_id, str) else "",
        count=len(items),
        head_hash=previous,
        public_key=public_key,
        entries=items,
        head_checked=head is not None,
    )


def _check_head(items: Sequence[LedgerEntry], key: VerifyingKey, head: LedgerHead) -> None:
    try:
        key.verify(
            b64url_decode(head.signature), head_message(head.count, head.head_hash, head.time)
        )
    except (ValueError, SignatureInvalid):
        raise LedgerError("head: the signature does not verify") from None
    if head.count > len(items):
        raise LedgerError(
            f"seq {len(items)}: missing — the signed head covers {head.count} entries, "
            f"only {len(items)} are present (the ledger was truncated)"
        )
    if not hmac.compare_digest(items[head.count - 1].hash.encode(), head.head_hash.encode()):
        raise LedgerError(f"seq {head.count - 1}: not the entry the signed head commits to")


def read_jsonl(lines: Iterable[str]) -> list[LedgerEntry]:
    """Parse JSON Lines (blank lines skipped); :class:`LedgerError` names the bad line."""
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise LedgerError(f"line {number}: not JSON") from None
        if not isinstance(record, dict):
            raise LedgerError(f"line {number}: not a JSON object")
        entries.append(LedgerEntry.from_json(record, where=f"line {number}"))
    return entries


def to_jsonl(entries: Iterable[LedgerEntry]) -> str:
    """JSON Lines text of ``entries`` (compact, sorted members, one per line, pure ASCII —
    so no character in a payload, U+2028 or U+0085 included, can split a line)."""
    return "".join(
        json.dumps(e.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
        for e in entries
    )


__all__ = [
    "ENTRY_PURPOSE",
    "FORMAT_VERSION",
    "GENESIS_KIND",
    "HEAD_PURPOSE",
    "KNOWN_KINDS",
    "MAX_PAYLOAD_BYTES",
    "ZERO_HASH",
    "LedgerEntry",
    "LedgerHead",
    "VerifiedLedger",
    "canonical_payload",
    "check_kind",
    "entry_message",
    "format_time",
    "genesis_key",
    "head_message",
    "make_entry",
    "read_jsonl",
    "sign_head",
    "to_jsonl",
    "verify_ledger",
]
