"""Who may score: signed requests from contract parties, the contract's quota, usage counts.

**Request signature** (version 1). A caller sends four headers::

    Cleanroom-Party:      hospital_a                       a party of the contract
    Cleanroom-Timestamp:  1764770000                       Unix seconds (caller's clock)
    Cleanroom-Nonce:      22-64 base64url characters       fresh per request
    Cleanroom-Signature:  base64url, 64 bytes              see below

signed with the party's contract signing key (Ed25519 or ECDSA P-256, as contract
approvals are) over the RFC 8785 canonical JSON of::

    {"body_sha256": hex SHA-256 of the exact body bytes, "contract_hash": H,
     "method": "POST", "nonce": N, "party": P, "path": "/score",
     "purpose": "cleanroom.scoring.request/1", "timestamp": T}

The enclave accepts a request when the party is in the contract, ``T`` is within
``max_skew`` of its clock, the signature verifies, and ``(party, nonce)`` was not seen
before (nonces are remembered until their timestamp is outside the window, so a replay
is refused either way). Binding ``contract_hash`` means a request signed for one contract
cannot be replayed to an enclave serving another; TLS (attested) keeps it confidential.

**Usage**: :class:`UsageMeter` counts records and requests per party per UTC day (the
contract's ``quota_per_day``) and writes ``scoring.usage`` ledger entries — counts per
party per window, never a record, a value or a request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cleanroom.contract.keys import SigningKey, b64url_encode, statement
from cleanroom.contract.model import Contract
from cleanroom.errors import (
    ConfigurationError,
    LedgerError,
    ScoringError,
    SignatureInvalid,
    StorageError,
)

_log = logging.getLogger(__name__)

REQUEST_PURPOSE: Final = "cleanroom.scoring.request/1"
PARTY_HEADER: Final = "Cleanroom-Party"
TIMESTAMP_HEADER: Final = "Cleanroom-Timestamp"
NONCE_HEADER: Final = "Cleanroom-Nonce"
SIGNATURE_HEADER: Final = "Cleanroom-Signature"
USAGE_KIND: Final = "scoring.usage"

_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{86}$")


def request_message(
    *,
    contract_hash: str,
    party: str,
    method: str,
    path: str,
    body: bytes,
    timestamp: int,
    nonce: str,
) -> bytes:
    """The exact bytes a caller signs (see the module docstring)."""
    return statement(
        REQUEST_PURPOSE,
        {
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "contract_hash": contract_hash,
            "method": method.upper(),
            "nonce": nonce,
            "party": party,
            "path": path,
            "timestamp": timestamp,
        },
    )


def sign_request(
    key: SigningKey,
    *,
    contract_hash: str,
    party: str,
    method: str,
    path: str,
    body: bytes,
    now: dt.datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four authentication headers of one request, signed with ``key``."""
    moment = now or dt.datetime.now(dt.UTC)
    timestamp = int(moment.timestamp())
    nonce = nonce or secrets.token_urlsafe(24)
    message = request_message(
        contract_hash=contract_hash,
        party=party,
        method=method,
        path=path,
        body=body,
        timestamp=timestamp,
        nonce=nonce,
    )
    return {
        PARTY_HEADER: party,
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: b64url_encode(key.sign(message)),
    }


class Refusal(ScoringError):
    """A refused scoring request: HTTP status, problem kind and a detail without data.

    The scoring service turns it into an RFC 7807 problem; the client raises a plain
    :class:`~cleanroom.errors.ScoringError` naming the status.
    """

    def __init__(self, status: int, kind: str, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Refusal(401, "unauthenticated", "the request signature is malformed") from None


class RequestAuthenticator:
    """Checks the signed headers of a request against the contract's party keys.

    ``max_skew`` bounds the difference between the caller's timestamp and the enclave's
    clock; ``max_nonces`` bounds the memory the replay cache may use (when full, new
    requests are refused with 503 until old nonces expire).
    """

    def __init__(
        self,
        contract: Contract,
        *,
        max_skew: dt.timedelta = dt.timedelta(seconds=60),
        max_nonces: int = 200_000,
    ) -> None:
        if not dt.timedelta(seconds=1) <= max_skew <= dt.timedelta(minutes=10):
            raise ConfigurationError("max_skew must be between 1 second and 10 minutes")
        if max_nonces < 1:
            raise ConfigurationError("max_nonces must be positive")
        self._contract = contract
        self._hash = contract.hash
        self._keys = {p.name: p.verifying_key for p in contract.parties}
        self._skew = max_skew
        self._max_nonces = max_nonces
        self._nonces: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def authenticate(
        self, *, method: str, path: str, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> str:
        """The authenticated party name, or :class:`Refusal` (401, or 503 when saturated)."""
        party = headers.get(PARTY_HEADER.lower()) or headers.get(PARTY_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER)
        nonce = headers.get(NONCE_HEADER.lower()) or headers.get(NONCE_HEADER)
        signature = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
        if not (party and stamp and nonce and signature):
            raise Refusal(401, "unauthenticated", "the request is not signed by a contract party")
        key = self._keys.get(party)
        if key is None:
            raise Refusal(401, "unauthenticated", "the caller is not a party of the contract")
        if (
            not _TIMESTAMP.match(stamp)
            or not _NONCE.match(nonce)
            or not _SIGNATURE.match(signature)
        ):
            raise Refusal(401, "unauthenticated", "the authentication headers are malformed")
        timestamp = int(stamp)
        clock = now.timestamp()
        if abs(clock - timestamp) > self._skew.total_seconds():
            raise Refusal(401, "unauthenticated", "the request timestamp is outside the window")
        message = request_message(
            contract_hash=self._hash,
            party=party,
            method=method,
            path=path,
            body=body,
            timestamp=timestamp,
            nonce=nonce,
        )
        try:
            key.verify(_b64url(signature), message)
        except SignatureInvalid:
            raise Refusal(401, "unauthenticated", "the request signature does not verify") from None
        self._use_nonce(party, nonce, timestamp, clock)
        return party

    def _use_nonce(self, party: str, nonce: str, timestamp: int, clock: float) -> None:
        # Only after the signature verified: a stranger cannot burn a party's nonces.
        window = self._skew.total_seconds()
        with self._lock:
            if (party, nonce) in self._nonces:
                raise Refusal(401, "unauthenticated", "the request nonce was already used")
            if len(self._nonces) >= self._max_nonces:
                self._nonces = {k: v for k, v in self._nonces.items() if v >= clock}
                if len(self._nonces) >= self._max_nonces:
                    raise Refusal(503, "busy", "too many requests in the replay window")
            # Remembered until the timestamp can no longer pass the skew check.
            self._nonces[(party, nonce)] = timestamp + window + 1


class UsageLedger(Protocol):
    """What :class:`UsageMeter` needs of a :class:`~cleanroom.ledger.Ledger`."""

    def append(self, kind: str, payload: Mapping[str, Any]) -> Any: ...


@dataclass
class _Counts:
    records: int = 0
    requests: int = 0
    over_quota: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"records": self.records, "requests": self.requests, "over_quota": self.over_quota}


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor(moment: dt.datetime, window: dt.timedelta) -> dt.datetime:
    seconds = int(window.total_seconds())
    epoch = int(moment.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)


class UsageMeter:
    """Per-party quotas per UTC day, and usage counts per window written to the ledger.

    :meth:`consume` admits ``records`` for a party (or raises a 429 :class:`Refusal`).
    Counts are kept per window of ``window`` (default one hour, aligned to UTC) and
    appended to ``ledger`` as one ``scoring.usage`` entry when the window closes — on
    the first request after it, on :meth:`close_ended` (the server calls it every minute),
    or on :meth:`flush` (which the server calls on shutdown).
    A ledger write that fails is retried at the next flush; scoring goes on.
    """

    def __init__(
        self,
        contract: Contract,
        *,
        model_id: str,
        ledger: UsageLedger | None = None,
        window: dt.timedelta = dt.timedelta(hours=1),
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        seconds = window.total_seconds()
        if seconds < 1 or seconds != int(seconds) or 86400 % int(seconds):
            raise ConfigurationError("the usage window must be whole seconds dividing a day")
        self._quota = {g.party: g.quota_per_day for g in contract.scoring.callers}
        self._contract_hash = contract.hash
        self._model_id = model_id
        self._ledger = ledger
        self._window = window
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self._today: dict[str, int] = {}
        self._start = _floor(self._clock(), window)
        self._counts: dict[str, _Counts] = {}
        self._pending: list[dict[str, Any]] = []

    def quota(self, party: str) -> int | None:
        """The party's records per day, ``None`` if the contract does not let it score."""
        return self._quota.get(party)

    def used_today(self, party: str, now: dt.datetime) -> int:
        """Records the party scored on ``now``'s UTC day."""
        with self._lock:
            return self._today.get(party, 0) if self._day == now.astimezone(dt.UTC).date() else 0

    def consume(self, party: str, records: int, now: dt.datetime) -> int:
        """Admit ``records`` for ``party``; returns what is left today, or raises 429."""
        quota = self._quota.get(party)
        if quota is None:
            raise Refusal(403, "forbidden", "the contract does not let this party score")
        with self._lock:
            self._roll(now)
            day = now.astimezone(dt.UTC).date()
            if self._day != day:
                self._day, self._today = day, {}
            used = self._today.get(party, 0)
            counts = self._counts.setdefault(party, _Counts())
            if used + records > quota:
                counts.over_quota += 1
                tomorrow = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
                retry = max(1, int((tomorrow - now).total_seconds()))
                raise Refusal(
                    429,
                    "quota-exceeded",
                    f"the contract allows {quota} records per day; {quota - used} left today",
                    retry_after=retry,
                )
            self._today[party] = used + records
            counts.records += records
            counts.requests += 1
            left = quota - used - records
        self._write_pending()
        return left

    def close_ended(self, now: dt.datetime | None = None) -> None:
        """Write the window that has ended by ``now``, if any (the server's timer calls
        this, so a quiet hour is recorded without waiting for the next request)."""
        moment = now or self._clock()
        with self._lock:
            self._roll(moment)
        self._write_pending()

    def flush(self, now: dt.datetime | None = None) -> None:
        """Close the current window now and write every pending usage entry."""
        moment = now or self._clock()
        with self._lock:
            self._close(moment)
            self._start = moment
        self._write_pending()

    def _roll(self, now: dt.datetime) -> None:
        end = _floor(self._start, self._window) + self._window
        if now >= end:
            self._close(end)
            self._start = _floor(now, self._window)

    def _close(self, end: dt.datetime) -> None:
        active = {p: c.as_dict() for p, c in sorted(self._counts.items())}
        self._counts = {}
        if active and end > self._start:
            self._pending.append(
                {
                    "contract_hash": self._contract_hash,
                    "model_id": self._model_id,
                    "window_start": _utc(self._start),
                    "window_end": _utc(end),
                    "parties": active,
                }
            )

    def _write_pending(self) -> None:
        if self._ledger is None:
            with self._lock:
                self._pending.clear()
            return
        with self._lock:
            pending, self._pending = self._pending, []
        for index, payload in enumerate(pending):
            try:
                self._ledger.append(USAGE_KIND, payload)
            except (LedgerError, StorageError) as error:
                _log.error("scoring usage not yet written to the ledger (%s)", type(error).__name__)
                with self._lock:
                    self._pending[:0] = pending[index:]
                return


__all__ = [
    "NONCE_HEADER",
    "PARTY_HEADER",
    "REQUEST_PURPOSE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "USAGE_KIND",
    "Refusal",
    "RequestAuthenticator",
    "UsageLedger",
    "UsageMeter",
    "request_message",
    "sign_request",
]
