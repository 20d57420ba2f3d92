"""Session crypto and the enclave package: layouts, agreement, sealing, tampering."""

from __future__ import annotations

import hashlib
import struct

import pytest

from cleanroom.crypto import CellCipher, ColumnEncryptionKey
from cleanroom.errors import DecryptionError, EvidenceError
from cleanroom.sql import package as pkg


def test_eck3_blob_layout_and_round_trip() -> None:
    key = pkg.new_ecdh_key().public_key()
    blob = pkg.eck3_blob(key)
    assert len(blob) == 104
    assert blob[:4] == b"ECK3"
    assert struct.unpack("<I", blob[4:8]) == (48,)
    assert blob[8:56] == key.public_numbers().x.to_bytes(48, "big")
    assert pkg.public_key_from_eck3(blob).public_numbers() == key.public_numbers()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b"ECK1" + b[4:],
        lambda b: b[:8] + bytes(96),  # (0, 0) is not on the curve
        lambda b: b[:4] + struct.pack("<I", 32) + b[8:],
    ],
)
def test_bad_eck3_blobs_are_refused(mutate: object) -> None:
    blob = pkg.eck3_blob(pkg.new_ecdh_key().public_key())
    with pytest.raises(EvidenceError):
        pkg.public_key_from_eck3(mutate(blob))  # type: ignore[operator]


def test_both_sides_derive_sha256_of_the_shared_x() -> None:
    client, enclave = pkg.new_ecdh_key(), pkg.new_ecdh_key()
    a = pkg.derive_session_key(client, enclave.public_key())
    b = pkg.derive_session_key(enclave, client.public_key())
    assert a == b
    from cryptography.hazmat.primitives.asymmetric import ec

    assert a == hashlib.sha256(client.exchange(ec.ECDH(), enclave.public_key())).digest()
    assert len(a) == 32


def test_attestation_parameters_round_trip() -> None:
    key = pkg.new_ecdh_key().public_key()
    nonce = "n" * 43
    data = pkg.attestation_parameters(nonce, key)
    assert struct.unpack_from("<II", data) == (pkg.PROTOCOL_CLEANROOM, 43)
    back_nonce, back_key = pkg.parse_attestation_parameters(data)
    assert back_nonce == nonce
    assert back_key.public_numbers() == key.public_numbers()
    with pytest.raises(EvidenceError):
        pkg.parse_attestation_parameters(data[:-1])
    with pytest.raises(EvidenceError):
        pkg.parse_attestation_parameters(struct.pack("<I", 1) + data[4:])


def _keys() -> list[pkg.PackageKey]:
    return [
        pkg.PackageKey(0, b"\x01" * 8, ColumnEncryptionKey.generate()),
        pkg.PackageKey(7, b"\x02" * 8, ColumnEncryptionKey.generate(), db_id=3),
    ]


def test_package_layout() -> None:
    session_key = bytes(range(32))
    keys = _keys()
    sealed = pkg.seal_package(
        session_id=1234, session_key=session_key, counter=5, statement="SELECT 1", keys=keys
    )
    assert struct.unpack_from("<q", sealed) == (1234,)
    plain = CellCipher(session_key).decrypt(sealed[8:])
    assert len(plain) == 16 + 8 + 32 + 2 * 46
    assert struct.unpack_from("<q", plain, 16) == (5,)
    assert plain[24:56] == hashlib.sha256("SELECT 1".encode("utf-16-le")).digest()
    db_id, version, key_id, cek = struct.unpack_from("<I8sH32s", plain, 56 + 46)
    assert (db_id, version, key_id) == (3, b"\x02" * 8, 7)
    assert cek == keys[1].cek.secret_bytes()
    opened = pkg.open_package(sealed, session_key)
    assert (opened.session_id, opened.counter) == (1234, 5)
    assert opened.query_hash == pkg.query_hash("SELECT 1")
    assert [k.cek for k in opened.keys] == [k.cek for k in keys]


def test_a_tampered_or_foreign_package_does_not_open() -> None:
    session_key = bytes(32)
    sealed = pkg.seal_package(
        session_id=1, session_key=session_key, counter=1, statement="q", keys=_keys()
    )
    for index in (9, 40, len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[index] ^= 1
        with pytest.raises(DecryptionError):
            pkg.open_package(bytes(tampered), session_key)
    with pytest.raises(DecryptionError):
        pkg.open_package(sealed, bytes([1]) * 32)
    with pytest.raises(DecryptionError):
        pkg.open_package(b"\x00" * 4, session_key)


def test_package_keys_are_redacted() -> None:
    key = _keys()[0]
    assert key.cek.secret_bytes().hex() not in repr(key)
