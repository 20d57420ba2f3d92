"""Secrets sealed to an enclave's ephemeral key: JWE in the flattened form Trustee's KBS sends.

A released resource is a JWE (RFC 7516) with ``alg: "ECDH-ES+A256KW"`` and
``enc: "A256GCM"`` to the enclave's attested ``tee-pubkey`` (EC P-256 or P-521 — Trustee
refuses P-384), in the flattened JSON serialization Trustee's ``kbs/src/jwe/mod.rs``
writes, with every header in ``protected`` and no ``aad`` member::

    {"protected":     b64url(UTF-8 JSON {"alg": "ECDH-ES+A256KW", "enc": "A256GCM",
                                         "epk": {"kty": "EC", "crv": ..., "x": ..., "y": ...}}),
     "encrypted_key": b64url(40 bytes: AES-KW of a random 32-byte content key),
     "iv":            b64url(12 bytes),
     "ciphertext":    b64url(AES-256-GCM of the plaintext, AAD = ASCII of "protected"),
     "tag":           b64url(16 bytes)}

The key agreement is ECDH-ES with the Concat KDF over the raw shared secret, no
``apu``/``apv`` (RFC 7518 §4.6). joserfc's compact serialization puts the headers in the
same place, so the flattened form here is the compact token split at its dots; joserfc's
own flattened API would move ``alg``/``epk`` into an unprotected per-recipient header,
which Trustee's client does not read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from cleanroom.errors import BrokerError, DecryptionError, EvidenceError

#: Key management algorithm of released resources.
ALG = "ECDH-ES+A256KW"
#: Content encryption algorithm of released resources.
ENC = "A256GCM"
#: Curves of ``tee-pubkey`` that Trustee's KBS (and this broker) seal to.
CURVES: frozenset[str] = frozenset({"P-256", "P-521"})
#: The members of a flattened JWE as sent, in order.
MEMBERS: tuple[str, ...] = ("protected", "encrypted_key", "iv", "ciphertext", "tag")

_ALGORITHMS = [ALG, ENC]


def check_tee_pubkey(jwk: Any) -> dict[str, str]:
    """``jwk`` if it is a public EC JWK this broker can seal to, else :class:`EvidenceError`.

    Required: ``kty: "EC"``, ``crv`` in :data:`CURVES`, ``x``, ``y``, a point on the curve,
    no private member; ``alg``, if present, ``"ECDH-ES+A256KW"`` (Trustee's KBS requires
    it, so :func:`tee_pubkey_of` always sends it; a key without it is sealed to the same way).
    """
    if not isinstance(jwk, Mapping):
        raise EvidenceError("tee-pubkey must be a JWK object")
    if "d" in jwk or jwk.get("kty") != "EC" or jwk.get("crv") not in CURVES:
        raise EvidenceError("tee-pubkey must be a public EC P-256 or P-521 JWK")
    if jwk.get("alg", ALG) != ALG:
        raise EvidenceError(f"tee-pubkey must be for alg {ALG!r}")
    if not all(isinstance(jwk.get(m), str) for m in ("x", "y")):
        raise EvidenceError("tee-pubkey needs string members x and y")
    allowed = {"kty", "crv", "x", "y", "alg", "kid", "use"}
    if set(jwk) - allowed:
        raise EvidenceError("tee-pubkey carries unexpected members")
    public: dict[str, str] = {str(k): str(v) for k, v in jwk.items()}
    try:
        ECKey.import_key(dict[str, str | list[str]](public))
    except (JoseError, ValueError, TypeError) as error:
        raise EvidenceError("tee-pubkey is not a point on its curve") from error
    return public


def seal(plaintext: bytes, tee_pubkey: Mapping[str, Any]) -> dict[str, str]:
    """Encrypt ``plaintext`` to ``tee_pubkey`` as a flattened JWE (module docstring)."""
    public = check_tee_pubkey(tee_pubkey)
    header = {"alg": ALG, "enc": ENC}
    try:
        token = jwe.encrypt_compact(
            header,
            plaintext,
            ECKey.import_key(dict[str, str | list[str]](public)),
            algorithms=_ALGORITHMS,
        )
    except (JoseError, ValueError) as error:
        raise BrokerError("cannot seal the resource to the tee-pubkey") from error
    return dict(zip(MEMBERS, token.split("."), strict=True))


def _b64url_ok(text: str) -> bool:
    try:
        base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return "=" not in text


def unseal(sealed: Mapping[str, Any], private_key: ECKey) -> bytes:
    """Decrypt a flattened JWE from :func:`seal` (or Trustee) with the ephemeral private key.

    Only ``ECDH-ES+A256KW`` / ``A256GCM`` with every header protected is accepted: an
    ``aad``, ``header`` or ``unprotected`` member, a missing member or another algorithm
    raises :class:`DecryptionError`, as does a wrong key or a changed byte.
    """
    if not isinstance(sealed, Mapping) or set(sealed) - set(MEMBERS) or set(MEMBERS) - set(sealed):
        raise DecryptionError()
    parts = [sealed[m] for m in MEMBERS]
    if not all(isinstance(p, str) and _b64url_ok(p) for p in parts):
        raise DecryptionError()
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        raise DecryptionError() from None
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("enc") != ENC:
        raise DecryptionError()
    try:
        result = jwe.decrypt_compact(".".join(parts), private_key, algorithms=_ALGORITHMS)
    except (JoseError, ValueError, TypeError):
        raise DecryptionError() from None
    if result.plaintext is None:
        raise DecryptionError()
    return bytes(result.plaintext)


def new_ephemeral_key() -> ECKey:
    """A fresh EC P-256 key pair for one key release (kept in memory only)."""
    return ECKey.generate_key("P-256", private=True)


def tee_pubkey_of(key: ECKey) -> dict[str, str]:
    """The public JWK of ``key`` as sent in ``runtime-data.tee-pubkey`` (with ``alg``)."""
    public = {k: str(v) for k, v in key.as_dict(private=False).items() if k != "kid"}
    public["alg"] = ALG
    return public


__all__ = [
    "ALG",
    "CURVES",
    "ENC",
    "MEMBERS",
    "check_tee_pubkey",
    "new_ephemeral_key",
    "seal",
    "tee_pubkey_of",
    "unseal",
]
