import hashlib
import json

import pytest

from cleanroom.attestation import report_data_for, runtime_data_for
from cleanroom.errors import EvidenceError

JWK = {"kty": "EC", "crv": "P-256", "x": "abc", "y": "def", "alg": "ECDH-ES+A256KW"}


def test_known_answer_against_hand_canonicalized_json() -> None:
    # For ASCII strings RFC 8785 is sorted keys and no whitespace.
    text = json.dumps({"nonce": "n0nce", "tee-pubkey": JWK}, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha384(text.encode()).digest() + b"\0" * 16
    assert report_data_for("n0nce", JWK) == expected
    assert len(expected) == 64


def test_binding_changes_with_nonce_and_key() -> None:
    base = report_data_for("n0nce", JWK)
    assert report_data_for("n0ncf", JWK) != base
    assert report_data_for("n0nce", {**JWK, "x": "abd"}) != base


@pytest.mark.parametrize("jwk", [{**JWK, "d": "secret"}, {"x": "1"}, "EC"])
def test_private_or_malformed_keys_are_refused(jwk: object) -> None:
    with pytest.raises(EvidenceError):
        runtime_data_for("n0nce", jwk)  # type: ignore[arg-type]
