"""Signing keys: both algorithms, PEM/JWK round trips, refusal of foreign keys, no leaks."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.contract import SigningKey, VerifyingKey
from cleanroom.contract.keys import b64url_decode, b64url_encode, statement
from cleanroom.errors import ConfigurationError, ContractError, SignatureInvalid

ALGS = ("ed25519", "p256")


@pytest.mark.parametrize("alg", ALGS)
def test_sign_verify_and_64_byte_signatures(alg: str) -> None:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    sig = key.sign(b"message")
    assert len(sig) == 64
    key.public_key.verify(sig, b"message")
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(sig, b"messagf")
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(tampered, b"message")
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(sig[:63], b"message")


@pytest.mark.parametrize("alg", ALGS)
def test_pem_and_jwk_round_trip(alg: str) -> None:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    pub = key.public_key
    assert VerifyingKey.from_pem(pub.to_pem()) == pub
    assert VerifyingKey.from_jwk(pub.to_jwk()) == pub
    assert VerifyingKey.parse(pub.to_jwk()) == VerifyingKey.parse(pub.to_pem())
    assert SigningKey.from_pem(key.private_pem()) == key
    assert SigningKey.from_pem(key.private_pem(password=b"pw"), password=b"pw") == key
    assert pub.algorithm == alg
    assert pub != SigningKey.generate(alg).public_key  # type: ignore[arg-type,unused-ignore]


def test_other_key_types_and_private_material_are_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ContractError):
        SigningKey(rsa_key)
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ContractError):
        VerifyingKey.from_pem(pem)
    key = SigningKey.generate()
    with pytest.raises(ContractError, match="private key"):
        VerifyingKey.from_pem(key.private_pem())
    jwk = dict(key.public_key.to_jwk(), d="AAAA")
    with pytest.raises(ContractError, match="private"):
        VerifyingKey.from_jwk(jwk)
    with pytest.raises(ContractError):
        VerifyingKey.from_jwk({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    with pytest.raises(ContractError):
        VerifyingKey.from_jwk({"kty": "RSA", "n": "AA", "e": "AQAB"})
    with pytest.raises(ConfigurationError):
        SigningKey.generate("rsa")  # type: ignore[arg-type]


def test_signing_key_never_prints_or_pickles() -> None:
    key = SigningKey.generate("p256")
    pem = key.private_pem().decode()
    body = "".join(pem.splitlines()[1:-1])
    assert "redacted" in repr(key)
    assert body[:20] not in repr(key)
    assert body[:20] not in str(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_save_is_private_and_never_overwrites(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.pem"
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(path) == key
    with pytest.raises(ConfigurationError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path) == key
    path.write_text("not a key")
    with pytest.raises(ContractError):
        SigningKey.load(path)


def test_statement_is_canonical_and_purpose_reserved() -> None:
    assert statement("p", {"b": 1, "a": "x"}) == b'{"a":"x","b":1,"purpose":"p"}'
    with pytest.raises(ValueError, match="reserved"):
        statement("p", {"purpose": "q"})


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=80))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


def test_b64url_rejects_padding_and_junk() -> None:
    for bad in ("AA==", "A!", "A"):
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(bad)
