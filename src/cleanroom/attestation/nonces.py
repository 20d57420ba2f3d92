"""Single-use, expiring verifier nonces."""

from __future__ import annotations

import datetime as dt
import secrets
import threading

from cleanroom.errors import ConfigurationError, PolicyViolation


class NonceStore:
    """Issues random nonces (32 bytes, base64url) that can each be consumed once, before expiry.

    Thread-safe, in memory. At most ``max_outstanding`` unconsumed nonces are kept; expired
    ones are dropped first, then the oldest (a flood of challenges cannot grow memory).
    """

    def __init__(
        self, *, ttl: dt.timedelta = dt.timedelta(minutes=5), max_outstanding: int = 10_000
    ) -> None:
        if ttl <= dt.timedelta(0) or ttl > dt.timedelta(hours=1):
            raise ConfigurationError("nonce ttl must be positive and at most one hour")
        if max_outstanding < 1:
            raise ConfigurationError("max_outstanding must be positive")
        self._ttl = ttl
        self._max = max_outstanding
        self._expiry: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    @property
    def ttl(self) -> dt.timedelta:
        """How long an issued nonce stays valid."""
        return self._ttl

    def issue(self, *, now: dt.datetime | None = None) -> str:
        """A fresh nonce, valid for :attr:`ttl`."""
        now = now or dt.datetime.now(dt.UTC)
        nonce = secrets.token_urlsafe(32)
        with self._lock:
            self._expire(now)
            while len(self._expiry) >= self._max:
                del self._expiry[next(iter(self._expiry))]
            self._expiry[nonce] = now + self._ttl
        return nonce

    def consume(self, nonce: str, *, now: dt.datetime | None = None) -> None:
        """Use ``nonce`` up; ``PolicyViolation("nonce", ...)`` if unknown, used or expired."""
        now = now or dt.datetime.now(dt.UTC)
        with self._lock:
            expiry = self._expiry.pop(nonce, None) if isinstance(nonce, str) else None
        if expiry is None:
            raise PolicyViolation("nonce", "the nonce is unknown or was already used")
        if now > expiry:
            raise PolicyViolation("nonce", "the nonce has expired")

    def _expire(self, now: dt.datetime) -> None:
        for nonce in [n for n, expiry in self._expiry.items() if expiry < now]:
            del self._expiry[nonce]

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)
