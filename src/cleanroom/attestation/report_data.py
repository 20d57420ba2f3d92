"""REPORTDATA binding of a verifier nonce and the enclave's ephemeral public key.

``REPORTDATA = SHA-384(RFC 8785 canonical JSON of runtime_data) || 16 zero bytes`` where
``runtime_data = {"nonce": <nonce>, "tee-pubkey": <public JWK>}`` — the Confidential
Containers KBS/Trustee binding, so a real Trustee verifier computes the same 64 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from cleanroom.errors import EvidenceError

#: JWK members that carry private key material; a tee-pubkey must have none of them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def check_public_jwk(jwk: Any) -> dict[str, Any]:
    """``jwk`` as a dict, refusing anything that is not a public key JWK."""
    if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kty"), str):
        raise EvidenceError("tee-pubkey must be a JWK object with 'kty'")
    if _PRIVATE_MEMBERS & set(jwk):
        raise EvidenceError("tee-pubkey carries private key material")
    return dict(jwk)


def runtime_data_for(nonce: str, tee_pubkey_jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The KBS ``runtime-data`` object ``{"nonce", "tee-pubkey"}``."""
    if not isinstance(nonce, str) or not nonce:
        raise EvidenceError("nonce must be a non-empty string")
    return {"nonce": nonce, "tee-pubkey": check_public_jwk(tee_pubkey_jwk)}


def report_data_for_runtime_data(runtime_data: Mapping[str, Any]) -> bytes:
    """SHA-384 of the RFC 8785 canonical JSON of ``runtime_data``, zero-padded to 64 bytes."""
    try:
        canonical = rfc8785.dumps(dict(runtime_data))
    except (TypeError, ValueError, rfc8785.CanonicalizationError) as error:
        raise EvidenceError("runtime data cannot be canonicalized") from error
    return hashlib.sha384(canonical).digest().ljust(64, b"\0")


def report_data_for(nonce: str, tee_pubkey_jwk: Mapping[str, Any]) -> bytes:
    """The 64-byte REPORTDATA binding ``nonce`` and ``tee_pubkey_jwk`` (see module docstring)."""
    return report_data_for_runtime_data(runtime_data_for(nonce, tee_pubkey_jwk))
