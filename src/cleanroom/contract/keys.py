"""Signing keys for contract approvals, revocations and ledger entries.

Two algorithms, nothing else: Ed25519 (``"ed25519"``) and ECDSA over P-256 with SHA-256
(``"p256"``). A signature is always 64 bytes: Ed25519's own encoding, or ECDSA's ``r || s``
as two 32-byte big-endian integers (the IEEE P1363 form JWS ``ES256`` uses), and travels
base64url-encoded without padding.

Signatures never cover free-form bytes: :func:`statement` builds the signed message as the
RFC 8785 canonical JSON of an object whose ``purpose`` names what is being signed, so an
approval can never be replayed as a revocation or a ledger entry.

A :class:`SigningKey` holds a private key: it redacts its ``repr``, refuses pickling and
exports its PEM only through :meth:`SigningKey.private_pem`. A :class:`VerifyingKey` is the
public half; two are equal when their SubjectPublicKeyInfo DER is (compared in constant time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from cleanroom.errors import ConfigurationError, ContractError, SignatureInvalid

SignatureAlgorithm = Literal["ed25519", "p256"]

#: The signature algorithms a party or an enclave may use.
SIGNATURE_ALGORITHMS: tuple[SignatureAlgorithm, ...] = ("ed25519", "p256")

_P256_ORDER_BYTES = 32


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on anything malformed."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def statement(purpose: str, fields: Mapping[str, Any]) -> bytes:
    """The exact bytes that get signed: RFC 8785 JSON of ``{"purpose": purpose, **fields}``."""
    if "purpose" in fields:
        raise ValueError("'purpose' is reserved")
    return rfc8785.dumps({"purpose": purpose, **fields})


class VerifyingKey:
    """An Ed25519 or ECDSA P-256 public key that verifies signatures."""

    __slots__ = ("_algorithm", "_key", "_spki")

    def __init__(self, key: PublicKeyTypes) -> None:
        if isinstance(key, ed25519.Ed25519PublicKey):
            self._algorithm: SignatureAlgorithm = "ed25519"
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            self._algorithm = "p256"
        else:
            raise ContractError("signing keys must be Ed25519 or ECDSA P-256")
        self._key = key
        self._spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # -- parsing ------------------------------------------------------------------------

    @classmethod
    def from_pem(cls, pem: str | bytes) -> VerifyingKey:
        """Parse a ``PUBLIC KEY`` PEM (SubjectPublicKeyInfo). Private keys are refused."""
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        if b"PRIVATE KEY" in data:
            raise ContractError("expected a public key, got a private key (never share it)")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise ContractError("the public key PEM does not parse") from None
        return cls(key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerifyingKey:
        """Parse a public JWK: OKP/Ed25519 (``x``) or EC/P-256 (``x``, ``y``)."""
        if "d" in jwk:
            raise ContractError("expected a public JWK, got a private one (never share it)")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        try:
            if kty == "OKP" and crv == "Ed25519":
                x = b64url_decode(jwk["x"])
                return cls(ed25519.Ed25519PublicKey.from_public_bytes(x))
            if kty == "EC" and crv == "P-256":
                x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
                if len(x) != _P256_ORDER_BYTES or len(y) != _P256_ORDER_BYTES:
                    raise ValueError("coordinate length")
                numbers = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
                )
                return cls(numbers.public_key())
        except (KeyError, TypeError, ValueError):
            raise ContractError("the public JWK is malformed or not on its curve") from None
        raise ContractError("signing JWKs must be OKP/Ed25519 or EC/P-256")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> VerifyingKey:
        """A PEM string or a JWK object, as a contract or a ledger records it."""
        if isinstance(spec, str):
            return cls.from_pem(spec)
        return cls.from_jwk(spec)

    # -- properties and export --------------------------------------------------------

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """``"ed25519"`` or ``"p256"``."""
        return self._algorithm

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the SubjectPublicKeyInfo DER."""
        return hashlib.sha256(self._spki).hexdigest()

    def to_pem(self) -> str:
        """The SubjectPublicKeyInfo PEM."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def to_jwk(self) -> dict[str, str]:
        """The public JWK (RFC 7517 / RFC 8037), members sorted."""
        if isinstance(self._key, ed25519.Ed25519PublicKey):
            raw = self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
        assert isinstance(self._key, ec.EllipticCurvePublicKey)
        numbers = self._key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_encode(numbers.x.to_bytes(_P256_ORDER_BYTES, "big")),
            "y": b64url_encode(numbers.y.to_bytes(_P256_ORDER_BYTES, "big")),
        }

    # -- verification -------------------------------------------------------------------

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` is this key's signature of ``message``, else raise
        :class:`SignatureInvalid` (which never says why)."""
        if not isinstance(signature, bytes) or len(signature) != 64:
            _invalid()
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, message)
            else:
                assert isinstance(self._key, ec.EllipticCurvePublicKey)
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                self._key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            _invalid()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyingKey):
            return NotImplemented
        return hmac.compare_digest(self._spki, other._spki)

    def __hash__(self) -> int:
        return hash(self._spki)

    def __repr__(self) -> str:
        return f"VerifyingKey({self._algorithm}, sha256:{self.fingerprint[:16]})"


def _invalid() -> NoReturn:
    raise SignatureInvalid("the signature does not verify")


class SigningKey:
    """An Ed25519 or ECDSA P-256 private key. Never printed, never pickled."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: PrivateKeyTypes) -> None:
        supported = isinstance(key, ed25519.Ed25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        )
        if not supported:
            raise ContractError("signing keys must be Ed25519 or ECDSA P-256")
        self._key = key
        self._public = VerifyingKey(key.public_key())

    @classmethod
    def generate(cls, algorithm: SignatureAlgorithm = "ed25519") -> SigningKey:
        """A fresh key from the operating system's RNG."""
        if algorithm == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if algorithm == "p256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise ConfigurationError(f"unknown signature algorithm {algorithm!r}: use ed25519 or p256")

    @classmethod
    def from_pem(cls, pem: bytes, *, password: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 (or SEC1) private key PEM, optionally password-protected."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (TypeError, ValueError, UnsupportedAlgorithm):
            # The message must not depend on the key bytes.
            raise ContractError(
                "the private key file does not parse (or the password is wrong)"
            ) from None
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, password: bytes | None = None) -> SigningKey:
        """Load a private key PEM file (see :meth:`from_pem`)."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ConfigurationError(
                f"cannot read the key file {os.fspath(path)!r} ({error.strerror})"
            ) from None
        return cls.from_pem(data, password=password)

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """``"ed25519"`` or ``"p256"``."""
        return self._public.algorithm

    @property
    def public_key(self) -> VerifyingKey:
        """The matching public key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message`` (see the module docstring for the encoding)."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def private_pem(self, *, password: bytes | None = None) -> bytes:
        """Export the private key as PKCS#8 PEM (encrypted when ``password`` is given)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def save(self, path: str | os.PathLike[str], *, password: bytes | None = None) -> None:
        """Write :meth:`private_pem` to a new file created with mode 0600 (never overwrites)."""
        data = self.private_pem(password=password)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise ConfigurationError(
                f"refusing to overwrite the key file {os.fspath(path)!r}"
            ) from None
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def __repr__(self) -> str:
        fingerprint = self._public.fingerprint[:16]
        return f"SigningKey({self.algorithm}, public sha256:{fingerprint}, <redacted>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey cannot be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(self._public)


def load_json_file(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising :class:`ConfigurationError` with the path (never its content)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read {os.fspath(path)!r} ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigurationError(
            f"{os.fspath(path)!r} is not valid JSON ({type(error).__name__})"
        ) from None


__all__ = [
    "SIGNATURE_ALGORITHMS",
    "SignatureAlgorithm",
    "SigningKey",
    "VerifyingKey",
    "b64url_decode",
    "b64url_encode",
    "load_json_file",
    "statement",
]
