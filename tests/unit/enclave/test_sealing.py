"""Sealed outputs: JWE to the contract's recipient keys, opened only by the recipient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from joserfc.jwk import ECKey

from cleanroom.enclave.sealing import (
    SEALED_FORMAT,
    load_recipient_private_key,
    open_sealed,
    read_envelope,
    recipient_public_key,
    seal_output,
)
from cleanroom.errors import ConfigurationError, DecryptionError

H = "ab" * 32
PrivateKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey


def _pair(kind: str) -> PrivateKey:
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1() if kind == "p256" else ec.SECP384R1())


def _public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _save(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.parametrize("kind", ["p256", "p384", "x25519"])
def test_round_trip_for_every_recipient_key_type(kind: str, tmp_path: Path) -> None:
    key = _pair(kind)
    envelope = seal_output(
        b"\x00onnx bytes",
        _public_pem(key),
        kind="model",
        party="hospital_a",
        contract_hash=H,
        content_type="application/onnx",
    )
    assert envelope["format"] == SEALED_FORMAT
    assert envelope["recipient_kid"] == recipient_public_key(_public_pem(key)).thumbprint()
    assert b"onnx bytes" not in json.dumps(envelope).encode()
    private = load_recipient_private_key(_save(key, tmp_path / "key.pem"))
    assert open_sealed(envelope, private) == b"\x00onnx bytes"


def test_a_jwk_recipient_and_a_jwk_private_key(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", private=True)
    envelope = seal_output(
        b"metrics",
        key.as_dict(private=False),
        kind="metrics",
        party="p",
        contract_hash=H,
        content_type="application/json",
    )
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps(key.as_dict(private=True)))
    assert open_sealed(envelope, load_recipient_private_key(path)) == b"metrics"


def test_another_key_or_a_changed_byte_does_not_open(tmp_path: Path) -> None:
    key, other = _pair("p256"), _pair("p256")
    envelope = seal_output(
        b"model", _public_pem(key), kind="model", party="a", contract_hash=H, content_type="x"
    )
    with pytest.raises(DecryptionError) as wrong:
        open_sealed(envelope, load_recipient_private_key(_save(other, tmp_path / "o.pem")))
    mine = load_recipient_private_key(_save(key, tmp_path / "k.pem"))
    header, rest = envelope["jwe"].split(".", 1)
    body = list(rest)
    body[-5] = "A" if body[-5] != "A" else "B"
    with pytest.raises(DecryptionError) as changed:
        open_sealed({**envelope, "jwe": header + "." + "".join(body)}, mine)
    assert str(wrong.value) == str(changed.value)  # one opaque message
    with pytest.raises(DecryptionError):
        open_sealed({**envelope, "format": "other"}, mine)


def test_refusals_at_sealing(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", private=True)
    with pytest.raises(ConfigurationError, match="private"):
        recipient_public_key(key.as_dict(private=True))
    with pytest.raises(ConfigurationError, match="kind"):
        seal_output(
            b"x",
            key.as_dict(private=False),
            kind="data",
            party="a",
            contract_hash=H,
            content_type="x",
        )
    with pytest.raises(ConfigurationError):
        recipient_public_key("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    (tmp_path / "junk.json").write_text("[]")
    with pytest.raises(ConfigurationError):
        read_envelope(tmp_path / "junk.json")
