"""Known answers: the exact signed bytes, and Ed25519 signatures under the RFC 8032 test key.

Ed25519 is deterministic, so another implementation (a party's own tool) can check its
encoding against these values. The key is RFC 8032 §7.1 TEST 1; its empty-message signature
anchors that the key is loaded as specified.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cleanroom.contract import SigningKey, VerifyingKey, contract_json_schema
from cleanroom.contract.keys import b64url_decode, b64url_encode
from cleanroom.contract.signatures import approval_message, revocation_message
from cleanroom.errors import ContractError

RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_EMPTY_SIG = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
    "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
HASH = "2b2f3704172e859bd14b42f55a554ac2dd3cf33555c6d4c2b45340921026988f"

APPROVAL = (
    b'{"contract_hash":"' + HASH.encode() + b'","party":"hospital_a",'
    b'"purpose":"cleanroom.contract.approve/1"}'
)
APPROVAL_SIG = (
    "f3VQURZc1v-dzvEBcrIHJsn5g4O6yP4m3vvbW7_e_Tppd60hfXM5cq6U61qc2xprtmAtZlXCRnXMW2oehhHOCw"
)
REVOCATION = (
    b'{"contract_hash":"' + HASH.encode() + b'","party":"hospital_a",'
    b'"purpose":"cleanroom.contract.revoke/1","time":"2026-12-03T14:00:00Z"}'
)
REVOCATION_SIG = (
    "bSZKO9WzAqHnKAdkPznSgbilLI0pMwhC_GUWgAeSgtjlrSw3tGrxCJk2AJrH5pTZhNyl8fjNmXZnz-iAqL_NBQ"
)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    seed = bytes.fromhex(RFC8032_SECRET)
    return SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def test_rfc8032_test_1(key: SigningKey) -> None:
    assert key.sign(b"").hex() == RFC8032_EMPTY_SIG
    jwk = key.public_key.to_jwk()
    assert b64url_decode(jwk["x"]).hex() == RFC8032_PUBLIC
    assert jwk == {
        "crv": "Ed25519",
        "kty": "OKP",
        "x": b64url_encode(bytes.fromhex(RFC8032_PUBLIC)),
    }


def test_approval_and_revocation_bytes_and_signatures(key: SigningKey) -> None:
    assert approval_message(HASH, "hospital_a") == APPROVAL
    assert revocation_message(HASH, "hospital_a", "2026-12-03T14:00:00Z") == REVOCATION
    assert b64url_encode(key.sign(APPROVAL)) == APPROVAL_SIG
    assert b64url_encode(key.sign(REVOCATION)) == REVOCATION_SIG
    public = VerifyingKey.from_jwk(key.public_key.to_jwk())
    public.verify(b64url_decode(APPROVAL_SIG), APPROVAL)
    public.verify(b64url_decode(REVOCATION_SIG), REVOCATION)


def test_messages_refuse_malformed_inputs() -> None:
    with pytest.raises(ContractError, match="64 lowercase hex"):
        approval_message(HASH.upper(), "hospital_a")
    with pytest.raises(ContractError, match="revocation time"):
        revocation_message(HASH, "hospital_a", "2026-12-03 14:00:00")


def test_schema_is_strict_everywhere() -> None:
    schema = contract_json_schema()
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        assert definition.get("additionalProperties") is False, name


def test_public_surface_is_pinned() -> None:
    import cleanroom.contract as contract

    assert sorted(contract.__all__) == sorted(
        [
            "ALGORITHMS", "METRICS", "SIGNATURE_ALGORITHMS", "TEE_TYPES", "Algorithm",
            "Approval", "Contract", "ContractInfo", "ContractRegistry", "ContractStatus",
            "Dataset", "Enclave", "Jwk", "MetricGrant", "Outputs", "Party", "Revocation",
            "Scoring", "ScoringGrant", "SignatureAlgorithm", "SigningKey", "Split",
            "VerifyingKey", "contract_hash", "contract_json_schema", "sign_approval",
            "sign_revocation", "verify_approval", "verify_revocation",
        ]
    )  # fmt: skip
    for name in contract.__all__:
        assert getattr(contract, name) is not None
