"""KBS sessions: the ``kbs-session-id`` cookie, its single-use nonce, and what it attested.

A session starts at ``POST /kbs/v0/auth`` with a fresh 32-byte nonce and expires after the
broker's ``session_ttl``. Its nonce can be presented to ``/attest`` once: the first attest
call uses it up, whether it succeeds or not (so evidence cannot be retried or replayed on
the same session). A successful attest stores the :class:`AttestedEnclave` for later
resource requests on the same cookie.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cleanroom.errors import ConfigurationError

#: Name of the session cookie (Trustee's).
COOKIE = "kbs-session-id"


@dataclass(frozen=True, kw_only=True, slots=True)
class AttestedEnclave:
    """What an attest call established about the enclave (from verified evidence or EAR).

    ``via`` is ``"evidence"`` (the broker appraised it) or ``"ear"`` (the party's verifier
    did). ``config_id`` is the contract hash the TEE reported (SNP HOST_DATA, TDX
    MRCONFIGID, simulated config id), ``tee_pubkey`` the key resources are sealed to.
    """

    via: str
    tee: str
    measurement: str
    config_id: str | None
    svn: int | str
    debug: bool
    simulated: bool
    tee_pubkey: Mapping[str, str] = field(repr=False)
    attested_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "tee_pubkey", MappingProxyType(dict(self.tee_pubkey)))

    def claims(self) -> dict[str, Any]:
        """JSON-friendly claims (for the attestation token and the decision log)."""
        return {
            "via": self.via,
            "tee": self.tee,
            "measurement": self.measurement,
            "config-id": self.config_id,
            "svn": self.svn,
            "debug": self.debug,
            "simulated": self.simulated,
            "tee-pubkey": dict(self.tee_pubkey),
            "attested-at": int(self.attested_at.timestamp()),
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AttestedEnclave:
        """Rebuild from :meth:`claims` (of a token whose signature the broker verified)."""
        svn = claims["svn"]
        config_id = claims["config-id"]
        pubkey = claims["tee-pubkey"]
        if not isinstance(svn, int | str) or not isinstance(pubkey, dict):
            raise ValueError("bad claims")
        if config_id is not None and not isinstance(config_id, str):
            raise ValueError("bad claims")
        return cls(
            via=str(claims["via"]),
            tee=str(claims["tee"]),
            measurement=str(claims["measurement"]),
            config_id=config_id,
            svn=svn,
            debug=claims["debug"] is True,
            simulated=claims["simulated"] is True,
            tee_pubkey=pubkey,
            attested_at=dt.datetime.fromtimestamp(int(claims["attested-at"]), dt.UTC),
        )


@dataclass(slots=True)
class Session:
    """One KBS session. ``nonce`` is ``None`` once used."""

    id: str
    tee: str
    nonce: str | None
    expires: dt.datetime
    attested: AttestedEnclave | None = None
    token_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id[:8]}..., tee={self.tee!r}, attested={self.attested is not None})"
        )


class SessionStore:
    """In-memory KBS sessions (thread-safe), each with a timeout; bounded in number.

    At most ``max_sessions`` are kept: expired ones are dropped first, then the oldest,
    so a flood of ``/auth`` calls cannot grow memory.
    """

    def __init__(
        self, *, ttl: dt.timedelta = dt.timedelta(minutes=5), max_sessions: int = 10_000
    ) -> None:
        if not dt.timedelta(0) < ttl <= dt.timedelta(hours=1):
            raise ConfigurationError("the session timeout must be positive and at most one hour")
        if max_sessions < 1:
            raise ConfigurationError("max_sessions must be positive")
        self._ttl = ttl
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def ttl(self) -> dt.timedelta:
        """How long a session lives after ``/auth``."""
        return self._ttl

    def start(self, tee: str, *, now: dt.datetime) -> Session:
        """A new session with a fresh nonce (32 random bytes, standard base64 as Trustee)."""
        session = Session(
            id=secrets.token_urlsafe(32),
            tee=tee,
            nonce=base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            expires=now + self._ttl,
        )
        with self._lock:
            for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
                del self._sessions[sid]
            while len(self._sessions) >= self._max:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, *, now: dt.datetime) -> Session | None:
        """The live session called ``session_id`` (``None`` if unknown or expired)."""
        if not isinstance(session_id, str):
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= now:
                del self._sessions[session_id]
                return None
        return session

    def take_nonce(self, session: Session) -> str | None:
        """Use up the session's nonce: it is returned once, then ``None`` forever."""
        with self._lock:
            nonce, session.nonce = session.nonce, None
        return nonce

    def mark_attested(self, session: Session, enclave: AttestedEnclave, token_id: str) -> None:
        """Record a successful attestation on ``session``."""
        with self._lock:
            session.attested = enclave
            session.token_id = token_id

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


__all__ = ["COOKIE", "AttestedEnclave", "Session", "SessionStore"]
