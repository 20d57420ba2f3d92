"""Enclave session crypto and the enclave package (SQL Server's layouts, all integers LE).

Attestation parameters (client → host → enclave)::

    uint32 protocol (4 = cleanroom) ‖ uint32 len(input) ‖ input ‖ uint32 len(clientDH) ‖ clientDH
    input    = the client's nonce, ASCII (base64url of 32 random bytes)
    clientDH = ephemeral ECDH P-384 public key as a 104-byte BCRYPT_ECCKEY_BLOB:
               b"ECK3" ‖ uint32 48 ‖ X(48) ‖ Y(48)  (big-endian coordinates)

The enclave answers with evidence whose REPORTDATA binds ``{"nonce", "tee-pubkey"}``
(:func:`cleanroom.attestation.report_data_for`), ``tee-pubkey`` being the JWK of its own
ephemeral P-384 key. Both sides then derive::

    session key = SHA-256(ECDH shared secret X coordinate)          32 bytes

Enclave package (client → host → enclave, once per statement)::

    package     = int64 sessionId ‖ AEAD(session key, keysPackage)
                  (AEAD = AEAD_AES_256_CBC_HMAC_SHA256, randomized)
    keysPackage = random(16) ‖ int64 counter ‖ SHA-256(UTF-16LE(statement text))
                  ‖ N × [uint32 dbId ‖ keyMdVersion(8) ‖ uint16 keyId ‖ CEK(32)]   (46 bytes each)

The AEAD is the Always Encrypted cell format (version 0x01) keyed with the session key, so
a package that was altered, or sealed under another session, does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.crypto import CellCipher, ColumnEncryptionKey, EncryptionType
from cleanroom.errors import DecryptionError, EvidenceError, QueryError

#: Attestation protocol id of cleanroom (SQL Server uses 1 = AAS, 2 = None, 3 = HGS).
PROTOCOL_CLEANROOM: Final = 4
ECK3_MAGIC: Final = b"ECK3"
ECK3_LENGTH: Final = 104
SESSION_KEY_LENGTH: Final = 32
KEY_ENTRY_LENGTH: Final = 46
_COORD: Final = 48
_KEY_ENTRY: Final = struct.Struct("<I8sH32s")
_HEADER: Final = struct.Struct("<16sq32s")
_SESSION: Final = struct.Struct("<q")
_MAX_KEYS: Final = 1024


def query_hash(statement: str) -> bytes:
    """SHA-256 of the UTF-16LE statement text (what a package is bound to)."""
    return hashlib.sha256(statement.encode("utf-16-le", "surrogatepass")).digest()


# -- ECDH P-384 ------------------------------------------------------------------------------


def new_ecdh_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ephemeral ECDH P-384 key."""
    return ec.generate_private_key(ec.SECP384R1())


def eck3_blob(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 104-byte BCRYPT_ECCKEY_BLOB of a P-384 public key."""
    numbers = public_key.public_numbers()
    return (
        ECK3_MAGIC
        + struct.pack("<I", _COORD)
        + numbers.x.to_bytes(_COORD, "big")
        + numbers.y.to_bytes(_COORD, "big")
    )


def public_key_from_eck3(blob: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a BCRYPT_ECCKEY_BLOB (ECK3); the point must be on P-384."""
    if (
        not isinstance(blob, bytes)
        or len(blob) != ECK3_LENGTH
        or blob[:4] != ECK3_MAGIC
        or struct.unpack("<I", blob[4:8])[0] != _COORD
    ):
        raise EvidenceError("an ECDH public key is a 104-byte ECK3 blob")
    x = int.from_bytes(blob[8:56], "big")
    y = int.from_bytes(blob[56:104], "big")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    except ValueError:
        raise EvidenceError("the ECDH public key is not a point on P-384") from None


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_of(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK (RFC 7518) of a P-384 key: what the report data binds."""
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64u(numbers.x.to_bytes(_COORD, "big")),
        "y": _b64u(numbers.y.to_bytes(_COORD, "big")),
    }


def derive_session_key(
    private_key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey
) -> bytes:
    """SHA-256 of the ECDH shared secret's X coordinate (.NET ``DeriveKeyFromHash(SHA256)``)."""
    return hashlib.sha256(private_key.exchange(ec.ECDH(), peer)).digest()


# -- attestation parameters ------------------------------------------------------------------


def attestation_parameters(nonce: str, client_public: ec.EllipticCurvePublicKey) -> bytes:
    """The ``@attestationParameters`` blob (see the module docstring)."""
    data = nonce.encode("ascii")
    blob = eck3_blob(client_public)
    return (
        struct.pack("<II", PROTOCOL_CLEANROOM, len(data))
        + data
        + struct.pack("<I", len(blob))
        + blob
    )


def parse_attestation_parameters(data: bytes) -> tuple[str, ec.EllipticCurvePublicKey]:
    """``(nonce, client public key)`` from an attestation-parameters blob."""
    try:
        protocol, size = struct.unpack_from("<II", data, 0)
        if protocol != PROTOCOL_CLEANROOM or not 16 <= size <= 512:
            raise EvidenceError("unsupported attestation protocol or nonce size")
        nonce = data[8 : 8 + size].decode("ascii")
        (dh_size,) = struct.unpack_from("<I", data, 8 + size)
        blob = data[12 + size :]
    except (struct.error, UnicodeDecodeError, TypeError):
        raise EvidenceError("malformed attestation parameters") from None
    if dh_size != len(blob):
        raise EvidenceError("malformed attestation parameters")
    return nonce, public_key_from_eck3(bytes(blob))


# -- the package ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageKey:
    """One key in an enclave package: ids, metadata version and the plaintext CEK."""

    key_id: int
    key_md_version: bytes
    cek: ColumnEncryptionKey = field(repr=False)
    db_id: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.key_id < 2**16 or not 0 <= self.db_id < 2**32:
            raise QueryError("key ids are uint16, database ids uint32")
        if len(self.key_md_version) != 8:
            raise QueryError("a key metadata version is 8 bytes")


@dataclass(frozen=True, slots=True)
class OpenedPackage:
    """A package the enclave decrypted (nothing in it is checked yet but the AEAD)."""

    session_id: int
    counter: int
    query_hash: bytes = field(repr=False)
    keys: tuple[PackageKey, ...] = field(repr=False)


def seal_package(
    *,
    session_id: int,
    session_key: bytes,
    counter: int,
    statement: str,
    keys: Sequence[PackageKey],
) -> bytes:
    """Build and seal an enclave package for one execution of ``statement``."""
    if len(keys) > _MAX_KEYS:
        raise QueryError(f"at most {_MAX_KEYS} keys per package")
    parts = [_HEADER.pack(secrets.token_bytes(16), counter, query_hash(statement))]
    for key in keys:
        parts.append(
            _KEY_ENTRY.pack(key.db_id, key.key_md_version, key.key_id, key.cek.secret_bytes())
        )
    cipher = CellCipher(session_key, EncryptionType.RANDOMIZED)
    return _SESSION.pack(session_id) + cipher.encrypt(b"".join(parts))


def package_session_id(package: bytes) -> int:
    """The (cleartext) session id a package names."""
    if not isinstance(package, bytes) or len(package) < _SESSION.size:
        raise DecryptionError()
    (session_id,) = _SESSION.unpack_from(package, 0)
    return int(session_id)


def open_package(package: bytes, session_key: bytes) -> OpenedPackage:
    """Decrypt a package with the session key; :class:`DecryptionError` if it does not open."""
    session_id = package_session_id(package)
    plain = CellCipher(session_key, EncryptionType.RANDOMIZED).decrypt(package[_SESSION.size :])
    body = len(plain) - _HEADER.size
    if body < 0 or body % KEY_ENTRY_LENGTH or body // KEY_ENTRY_LENGTH > _MAX_KEYS:
        raise DecryptionError()
    _, counter, digest = _HEADER.unpack_from(plain, 0)
    keys = []
    for offset in range(_HEADER.size, len(plain), KEY_ENTRY_LENGTH):
        db_id, version, key_id, material = _KEY_ENTRY.unpack_from(plain, offset)
        keys.append(PackageKey(key_id, version, ColumnEncryptionKey(material), db_id))
    return OpenedPackage(session_id, counter, digest, tuple(keys))


def same_hash(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a, b)


def key_md_version(*parts: Any) -> bytes:
    """An 8-byte metadata version for a CEK: SHA-256 of its name and wrapped values, cut."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        digest.update(struct.pack("<I", len(data)) + data)
    return digest.digest()[:8]


__all__ = [
    "ECK3_LENGTH",
    "KEY_ENTRY_LENGTH",
    "PROTOCOL_CLEANROOM",
    "SESSION_KEY_LENGTH",
    "OpenedPackage",
    "PackageKey",
    "attestation_parameters",
    "derive_session_key",
    "eck3_blob",
    "jwk_of",
    "key_md_version",
    "new_ecdh_key",
    "open_package",
    "package_session_id",
    "parse_attestation_parameters",
    "public_key_from_eck3",
    "query_hash",
    "same_hash",
    "seal_package",
]
