"""Outputs sealed to a recipient: JWE (ECDH-ES+A256KW, A256GCM) in a small JSON envelope.

A sealed output file (``<kind>.<party>.jwe.json``) is, in UTF-8 JSON::

    {"format": "cleanroom-sealed/1",
     "kind": "model" | "metrics" | "collaboration_report",
     "party": <recipient party>, "contract_hash": <hex>,
     "content_type": "application/onnx" | "application/json",
     "recipient_kid": <RFC 7638 thumbprint of the recipient's public key>,
     "jwe": <JWE compact serialization>}

The JWE protected header is ``{"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty", "kid"}``;
the recipient key is the contract's ``recipient_key`` of that party (EC P-256, EC P-384 or
X25519, PEM or JWK). The envelope members outside the JWE are not authenticated: a
recipient checks what it opened against the signed training receipt (the model's SHA-256
is the model id, and the receipt lists the SHA-256 of every sealed file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from cleanroom.contract import Jwk
from cleanroom.errors import ConfigurationError, DecryptionError

#: Format tag of a sealed output envelope.
SEALED_FORMAT = "cleanroom-sealed/1"
#: Key management and content encryption of sealed outputs.
ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
#: The kinds of output the enclave seals.
OUTPUT_KINDS: tuple[str, ...] = ("model", "metrics", "collaboration_report")

_ALGORITHMS = [ALG, ENC]
RecipientKey = ECKey | OKPKey


def recipient_public_key(spec: str | Jwk | Mapping[str, Any]) -> RecipientKey:
    """The public key of a contract ``recipient_key`` (PEM text, :class:`Jwk` or JWK dict)."""
    try:
        if isinstance(spec, str):
            key = serialization.load_pem_public_key(spec.encode("ascii", "replace"))
            pem = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            for cls in (ECKey, OKPKey):
                try:
                    return cls.import_key(pem)
                except (JoseError, ValueError, TypeError):
                    continue
            raise ConfigurationError("the recipient key is not an EC or X25519 public key")
        raw = spec.as_dict() if isinstance(spec, Jwk) else dict(spec)
        data: dict[str, str | list[str]] = {str(k): v for k, v in raw.items()}
        if "d" in data:
            raise ConfigurationError("a recipient public key must not carry private material")
        if data.get("kty") == "OKP":
            return OKPKey.import_key(data)
        return ECKey.import_key(data)
    except (JoseError, ValueError, TypeError, UnsupportedAlgorithm) as error:
        if isinstance(error, ConfigurationError):
            raise
        raise ConfigurationError("the recipient key does not parse") from None


def load_recipient_private_key(path: str | Path, *, password: bytes | None = None) -> RecipientKey:
    """A recipient's private key from a PEM (PKCS#8) or JWK file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read the recipient key ({error.strerror})") from None
    try:
        if data.lstrip().startswith(b"{"):
            jwk = json.loads(data)
            if jwk.get("kty") == "OKP":
                return OKPKey.import_key(jwk)
            return ECKey.import_key(jwk)
        key = serialization.load_pem_private_key(data, password=password)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    except (JoseError, ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError("the recipient private key does not parse") from None
    for cls in (ECKey, OKPKey):
        try:
            return cls.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
    raise ConfigurationError("the recipient private key is not an EC or X25519 key")


def seal_output(
    plaintext: bytes,
    recipient_key: str | Jwk | Mapping[str, Any],
    *,
    kind: str,
    party: str,
    contract_hash: str,
    content_type: str,
) -> dict[str, str]:
    """The sealed envelope of ``plaintext`` for ``party`` (module docstring)."""
    if kind not in OUTPUT_KINDS:
        raise ConfigurationError(f"unknown output kind {kind!r}")
    public = recipient_public_key(recipient_key)
    kid = public.thumbprint()
    header = {"alg": ALG, "enc": ENC, "cty": content_type, "kid": kid}
    try:
        token = jwe.encrypt_compact(header, plaintext, public, algorithms=_ALGORITHMS)
    except (JoseError, ValueError, TypeError) as error:
        raise ConfigurationError(f"cannot seal to the recipient key of {party}") from error
    return {
        "format": SEALED_FORMAT,
        "kind": kind,
        "party": party,
        "contract_hash": contract_hash,
        "content_type": content_type,
        "recipient_kid": kid,
        "jwe": token,
    }


def open_sealed(envelope: Mapping[str, Any], private_key: RecipientKey) -> bytes:
    """Decrypt a sealed envelope with the recipient's private key.

    Raises :class:`DecryptionError` (one opaque message) for a wrong key, a changed byte,
    another algorithm or a malformed envelope.
    """
    if not isinstance(envelope, Mapping) or envelope.get("format") != SEALED_FORMAT:
        raise DecryptionError()
    token = envelope.get("jwe")
    if not isinstance(token, str):
        raise DecryptionError()
    try:
        result = jwe.decrypt_compact(token, private_key, algorithms=_ALGORITHMS)
    except (JoseError, ValueError, TypeError):
        raise DecryptionError() from None
    header = result.protected
    if header.get("alg") != ALG or header.get("enc") != ENC or result.plaintext is None:
        raise DecryptionError()
    return bytes(result.plaintext)


def read_envelope(path: str | Path) -> dict[str, Any]:
    """Read a sealed output file (``ConfigurationError`` if it is not an envelope)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigurationError(f"{str(path)!r} is not a sealed output file") from None
    if not isinstance(document, dict) or document.get("format") != SEALED_FORMAT:
        raise ConfigurationError(f"{str(path)!r} is not a sealed output file")
    return document


__all__ = [
    "ALG",
    "ENC",
    "OUTPUT_KINDS",
    "SEALED_FORMAT",
    "RecipientKey",
    "load_recipient_private_key",
    "open_sealed",
    "read_envelope",
    "recipient_public_key",
    "seal_output",
]
