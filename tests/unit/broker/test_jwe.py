"""JWE sealing to the enclave's ephemeral key, in Trustee's flattened form."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import ECKey

from cleanroom.broker import jwe
from cleanroom.errors import DecryptionError, EvidenceError


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def key() -> ECKey:
    return jwe.new_ephemeral_key()


def test_flattened_form_matches_trustee(key: ECKey) -> None:
    sealed = jwe.seal(b"k" * 32, jwe.tee_pubkey_of(key))
    assert list(sealed) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert "aad" not in sealed
    assert "header" not in sealed
    header = json.loads(_b64d(sealed["protected"]))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["enc"] == "A256GCM"
    assert set(header["epk"]) == {"kty", "crv", "x", "y"}
    assert header["epk"]["crv"] == "P-256"
    assert "apu" not in header
    assert "apv" not in header
    assert len(_b64d(sealed["encrypted_key"])) == 40  # AES-KW of a 32-byte content key
    assert len(_b64d(sealed["iv"])) == 12
    assert len(_b64d(sealed["tag"])) == 16
    assert len(_b64d(sealed["ciphertext"])) == 32
    for value in sealed.values():
        assert "=" not in value


def test_round_trip_and_interop_with_joserfc_compact(key: ECKey) -> None:
    sealed = jwe.seal(b"secret-column-key-0123456789abcd", jwe.tee_pubkey_of(key))
    assert jwe.unseal(sealed, key) == b"secret-column-key-0123456789abcd"
    # The flattened members joined by dots are a standard compact JWE any library reads.
    compact = ".".join(sealed[m] for m in jwe.MEMBERS)
    result = joserfc_jwe.decrypt_compact(compact, key, algorithms=["ECDH-ES+A256KW", "A256GCM"])
    assert result.plaintext == b"secret-column-key-0123456789abcd"


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_round_trip_property(plaintext: bytes) -> None:
    key = jwe.new_ephemeral_key()
    assert jwe.unseal(jwe.seal(plaintext, jwe.tee_pubkey_of(key)), key) == plaintext


def test_alg_may_be_absent_but_never_another() -> None:
    key = jwe.new_ephemeral_key()
    bare = {k: v for k, v in jwe.tee_pubkey_of(key).items() if k != "alg"}
    assert jwe.unseal(jwe.seal(b"y" * 32, bare), key) == b"y" * 32


def test_p521_accepted_p384_refused() -> None:
    big = ECKey.generate_key("P-521", private=True)
    sealed = jwe.seal(b"x" * 32, jwe.tee_pubkey_of(big))
    assert jwe.unseal(sealed, big) == b"x" * 32
    mid = ECKey.generate_key("P-384", private=True)
    with pytest.raises(EvidenceError):
        jwe.seal(b"x" * 32, jwe.tee_pubkey_of(mid))


@pytest.mark.parametrize(
    "edit",
    [
        lambda k: {**k, "d": "AAAA"},
        lambda k: {**k, "alg": "RSA-OAEP-256"},
        lambda k: {**k, "kty": "OKP"},
        lambda k: {**k, "x5u": "https://example.invalid"},
        lambda k: {**k, "y": k["x"]},  # not on the curve
        lambda k: "not a jwk",
    ],
)
def test_bad_tee_pubkeys_are_refused(key: ECKey, edit: Any) -> None:
    with pytest.raises(EvidenceError):
        jwe.check_tee_pubkey(edit(jwe.tee_pubkey_of(key)))


def test_wrong_key_and_every_tampered_member_fail_alike(key: ECKey) -> None:
    sealed = jwe.seal(b"k" * 32, jwe.tee_pubkey_of(key))
    with pytest.raises(DecryptionError) as wrong:
        jwe.unseal(sealed, jwe.new_ephemeral_key())
    for member in jwe.MEMBERS:
        raw = bytearray(_b64d(sealed[member]))
        raw[len(raw) // 2] ^= 1
        bad = {**sealed, member: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
        with pytest.raises(DecryptionError) as tampered:
            jwe.unseal(bad, key)
        assert str(tampered.value) == str(wrong.value)


def test_unprotected_headers_aad_and_other_algorithms_are_refused(key: ECKey) -> None:
    sealed = jwe.seal(b"k" * 32, jwe.tee_pubkey_of(key))
    with pytest.raises(DecryptionError):
        jwe.unseal({**sealed, "aad": "AAAA"}, key)
    with pytest.raises(DecryptionError):
        jwe.unseal({**sealed, "header": {"alg": "dir"}}, key)
    with pytest.raises(DecryptionError):
        jwe.unseal({m: sealed[m] for m in jwe.MEMBERS[:-1]}, key)
    # joserfc's own flattened JSON puts alg/epk in a per-recipient header: not Trustee's form.
    public = ECKey.import_key(jwe.tee_pubkey_of(key))  # type: ignore[arg-type]
    dir_token = joserfc_jwe.encrypt_compact(
        {"alg": "ECDH-ES", "enc": "A256GCM"}, b"k" * 32, public, algorithms=["ECDH-ES", "A256GCM"]
    )
    with pytest.raises(DecryptionError):
        jwe.unseal(dict(zip(jwe.MEMBERS, dir_token.split("."), strict=True)), key)


def test_tee_pubkey_of_is_public_and_names_alg(key: ECKey) -> None:
    public = jwe.tee_pubkey_of(key)
    assert public["alg"] == "ECDH-ES+A256KW"
    assert "d" not in public
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64d(public["x"]), "big"),
        int.from_bytes(_b64d(public["y"]), "big"),
        ec.SECP256R1(),
    )
    assert numbers.public_key() is not None
