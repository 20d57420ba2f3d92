"""Party approvals and revocations of a contract hash, and how they are checked.

The signed messages (see :func:`cleanroom.contract.keys.statement`) are RFC 8785 JSON:

* approval:   ``{"contract_hash": H, "party": P, "purpose": "cleanroom.contract.approve/1"}``
* revocation: ``{"contract_hash": H, "party": P, "purpose": "cleanroom.contract.revoke/1",
  "time": T}`` where ``T`` is the UTC time the party revoked (``YYYY-MM-DDTHH:MM:SSZ``).

Binding the party name into the message means a signature cannot be moved from one party
to another even if the contract lists the same key twice (which validation refuses anyway).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cleanroom.contract.keys import SigningKey, b64url_decode, b64url_encode, statement
from cleanroom.contract.model import Contract
from cleanroom.errors import ContractError, SignatureInvalid

APPROVE_PURPOSE = "cleanroom.contract.approve/1"
REVOKE_PURPOSE = "cleanroom.contract.revoke/1"

_HASH = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def check_contract_hash(value: str) -> str:
    """Return ``value`` if it is a lowercase hex SHA-256, else raise :class:`ContractError`."""
    if not isinstance(value, str) or not _HASH.match(value):
        raise ContractError("a contract hash is 64 lowercase hex digits")
    return value


def approval_message(contract_hash: str, party: str) -> bytes:
    """The bytes a party signs to approve ``contract_hash``."""
    return statement(
        APPROVE_PURPOSE, {"contract_hash": check_contract_hash(contract_hash), "party": party}
    )


def revocation_message(contract_hash: str, party: str, time: str) -> bytes:
    """The bytes a party signs to revoke ``contract_hash`` at ``time``."""
    if not isinstance(time, str) or not _TIME.match(time):
        raise ContractError("a revocation time is YYYY-MM-DDTHH:MM:SSZ")
    return statement(
        REVOKE_PURPOSE,
        {"contract_hash": check_contract_hash(contract_hash), "party": party, "time": time},
    )


@dataclass(frozen=True, slots=True)
class Approval:
    """A party's signature over a contract hash (``signature`` is base64url)."""

    contract_hash: str
    party: str
    signature: str

    def signature_bytes(self) -> bytes:
        """The raw 64-byte signature (:class:`SignatureInvalid` if it is not base64url)."""
        return _decode(self.signature)

    def to_json(self) -> dict[str, str]:
        """``{"contract_hash", "party", "signature"}`` — what a party hands the operator."""
        return {
            "contract_hash": self.contract_hash,
            "party": self.party,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Approval:
        """Parse :meth:`to_json` output (unverified: the registry verifies)."""
        values = _fields(record, ("contract_hash", "party", "signature"), "approval")
        return cls(check_contract_hash(values[0]), values[1], values[2])


def _fields(record: Mapping[str, Any], names: tuple[str, ...], what: str) -> list[str]:
    if not isinstance(record, Mapping) or set(record) != set(names):
        raise ContractError(f"an {what} has exactly the members {', '.join(names)}")
    values = [record[name] for name in names]
    if not all(isinstance(v, str) for v in values):
        raise ContractError(f"the members of an {what} are strings")
    return values


@dataclass(frozen=True, slots=True)
class Revocation:
    """A party's signed, permanent withdrawal of its consent (``signature`` is base64url)."""

    contract_hash: str
    party: str
    time: str
    signature: str

    def signature_bytes(self) -> bytes:
        """The raw 64-byte signature (:class:`SignatureInvalid` if it is not base64url)."""
        return _decode(self.signature)

    def to_json(self) -> dict[str, str]:
        """``{"contract_hash", "party", "signature", "time"}``."""
        return {
            "contract_hash": self.contract_hash,
            "party": self.party,
            "signature": self.signature,
            "time": self.time,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Revocation:
        """Parse :meth:`to_json` output (unverified: the registry verifies)."""
        names = ("contract_hash", "party", "time", "signature")
        h, party, time, signature = _fields(record, names, "revocation")
        return cls(check_contract_hash(h), party, time, signature)


def _decode(signature: str) -> bytes:
    try:
        return b64url_decode(signature)
    except ValueError:
        raise SignatureInvalid("the signature is not base64url") from None


def _check_key(contract: Contract, party: str, key: SigningKey) -> None:
    expected = contract.party(party).verifying_key
    if key.public_key != expected:
        raise ContractError(
            f"this key is not the signing key the contract names for party {party!r}"
        )


def sign_approval(contract: Contract, party: str, key: SigningKey) -> Approval:
    """Sign ``contract``'s hash as ``party``; refuses a key that is not that party's."""
    _check_key(contract, party, key)
    h = contract.hash
    return Approval(h, party, b64url_encode(key.sign(approval_message(h, party))))


def sign_revocation(
    contract: Contract, party: str, key: SigningKey, *, now: dt.datetime | None = None
) -> Revocation:
    """Sign a revocation of ``contract`` as ``party`` (``now``: a test seam; default the clock)."""
    _check_key(contract, party, key)
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    time = moment.isoformat().replace("+00:00", "Z")
    h = contract.hash
    return Revocation(h, party, time, b64url_encode(key.sign(revocation_message(h, party, time))))


def verify_approval(contract: Contract, approval: Approval) -> None:
    """Raise unless ``approval`` is a valid signature, by the named party, of this contract."""
    if approval.contract_hash != contract.hash:
        raise SignatureInvalid("the approval is for another contract hash")
    key = contract.party(approval.party).verifying_key
    try:
        key.verify(
            approval.signature_bytes(), approval_message(approval.contract_hash, approval.party)
        )
    except SignatureInvalid:
        raise SignatureInvalid(
            f"the signature of party {approval.party!r} does not verify for this contract"
        ) from None


def verify_revocation(contract: Contract, revocation: Revocation) -> None:
    """Raise unless ``revocation`` is a valid signed revocation by the named party."""
    if revocation.contract_hash != contract.hash:
        raise SignatureInvalid("the revocation is for another contract hash")
    key = contract.party(revocation.party).verifying_key
    message = revocation_message(revocation.contract_hash, revocation.party, revocation.time)
    try:
        key.verify(revocation.signature_bytes(), message)
    except SignatureInvalid:
        raise SignatureInvalid(
            f"the revocation of party {revocation.party!r} does not verify for this contract"
        ) from None


__all__ = [
    "APPROVE_PURPOSE",
    "REVOKE_PURPOSE",
    "Approval",
    "Revocation",
    "approval_message",
    "check_contract_hash",
    "revocation_message",
    "sign_approval",
    "sign_revocation",
    "verify_approval",
    "verify_revocation",
]
