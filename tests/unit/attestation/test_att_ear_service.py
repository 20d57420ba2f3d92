"""The verifier app in process (httpx over ASGI) and EAR token checks."""

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from cleanroom.attestation import (
    EAR_PROFILE,
    AttestationPolicy,
    VerifierSettings,
    create_app,
    new_signing_key,
    report_data_for,
    runtime_data_for,
    verify_ear_token,
)
from cleanroom.attestation.ear import status_of
from cleanroom.errors import AttestationError, ConfigurationError
from cleanroom.tee import Evidence, SimulatedLauncher

MEASUREMENT = "5e" * 48
ISSUER = "test-verifier"


@pytest.fixture
def signing_key() -> ECKey:
    return new_signing_key()


@pytest.fixture
def client(launcher: SimulatedLauncher, signing_key: ECKey) -> TestClient:
    settings = VerifierSettings(
        issuer=ISSUER,
        policy=AttestationPolicy(allow_simulation=True, allowed_measurements={MEASUREMENT}),
        trusted_roots=[launcher.root_certificate],
    )
    return TestClient(create_app(settings, signing_key=signing_key))


def _attest(
    client: TestClient, launcher: SimulatedLauncher, jwk: Any, measurement: str = MEASUREMENT
) -> tuple[httpx.Response, str]:
    nonce = client.post("/challenge").json()["nonce"]
    evidence = launcher.sign_report(
        measurement=measurement, config_id=None, report_data=report_data_for(nonce, jwk)
    )
    body = {"evidence": evidence.to_json(), "runtime-data": runtime_data_for(nonce, jwk)}
    return client.post("/attest", json=body), nonce


def test_attest_returns_a_warning_ear_for_simulated_evidence(
    client: TestClient, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    reply, nonce = _attest(client, launcher, tee_jwk)
    assert reply.status_code == 200
    jwks = client.get("/.well-known/jwks.json").json()
    assert "d" not in jwks["keys"][0]
    ear = verify_ear_token(reply.json()["token"], jwks, issuer=ISSUER, nonce=nonce)
    assert ear.status == "warning"
    assert ear.simulated
    assert ear.trustworthiness_vector["hardware"] == 32
    assert ear.annotated_evidence["measurement"] == MEASUREMENT
    assert ear.annotated_evidence["tee-pubkey"] == dict(tee_jwk)
    assert ear.expires_at - ear.issued_at <= dt.timedelta(minutes=10)
    assert ear.raw["eat_profile"] == EAR_PROFILE
    assert str(ear.policy_id).startswith("cleanroom:policy:")


def test_a_nonce_is_single_use(
    client: TestClient, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    nonce = client.post("/challenge").json()["nonce"]
    evidence = launcher.sign_report(
        measurement=MEASUREMENT, config_id=None, report_data=report_data_for(nonce, tee_jwk)
    )
    body = {"evidence": evidence.to_json(), "runtime-data": runtime_data_for(nonce, tee_jwk)}
    assert client.post("/attest", json=body).status_code == 200
    replay = client.post("/attest", json=body)
    assert replay.status_code == 403
    assert replay.json()["rule"] == "nonce"


def test_policy_and_format_failures(
    client: TestClient, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    reply, _ = _attest(client, launcher, tee_jwk, measurement="00" * 48)
    assert (reply.status_code, reply.json()["rule"]) == (403, "measurement")
    assert client.post("/attest", content=b"{not json").status_code == 400
    nonce = client.post("/challenge").json()["nonce"]
    garbage = {"evidence": {"tee": "simulated", "raw": "AAAA"}, "runtime-data": {"nonce": nonce}}
    assert client.post("/attest", json=garbage).status_code == 400


def test_token_checks(client: TestClient, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    reply, nonce = _attest(client, launcher, tee_jwk)
    token = reply.json()["token"]
    jwks = client.get("/.well-known/jwks.json").json()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    other = {"keys": [new_signing_key().as_dict(private=False)]}
    cases: list[dict[str, Any]] = [
        {"jwks": jwks, "issuer": "someone-else", "nonce": nonce},
        {"jwks": jwks, "issuer": ISSUER, "nonce": "another-nonce"},
        {"jwks": jwks, "issuer": ISSUER, "nonce": nonce, "now": later},
        {"jwks": other, "issuer": ISSUER, "nonce": nonce},
    ]
    for case in cases:
        with pytest.raises(AttestationError):
            verify_ear_token(token, case.pop("jwks"), **case)
    head, body, sig = token.split(".")
    with pytest.raises(AttestationError):
        verify_ear_token(f"{head}.{body}x.{sig}", jwks, issuer=ISSUER, nonce=nonce)


def test_a_token_claiming_affirming_for_simulation_is_refused(signing_key: ECKey) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    vector = {"hardware": 2}
    claims = {
        "eat_profile": EAR_PROFILE, "iss": ISSUER, "iat": now, "exp": now + 60,
        "eat_nonce": "n" * 16,
        "submods": {"cleanroom": {
            "ear.status": "affirming", "ear.trustworthiness-vector": vector,
            "ear.veraison.annotated-evidence": {"simulated": True},
        }},
    }  # fmt: skip
    token = jwt.encode({"alg": "ES256", "kid": signing_key.kid}, claims, signing_key)
    jwks = {"keys": [signing_key.as_dict(private=False)]}
    with pytest.raises(AttestationError, match="simulated"):
        verify_ear_token(token, jwks, issuer=ISSUER, nonce="n" * 16)
    claims["exp"] = now + 3600  # lifetime over 10 minutes
    claims["submods"]["cleanroom"]["ear.veraison.annotated-evidence"] = {}
    token = jwt.encode({"alg": "ES256", "kid": signing_key.kid}, claims, signing_key)
    with pytest.raises(AttestationError, match="lifetime"):
        verify_ear_token(token, jwks, issuer=ISSUER, nonce="n" * 16)


def test_status_tiers() -> None:
    assert status_of({"a": 2, "b": 0}) == "affirming"
    assert status_of({"a": 2, "b": 32}) == "warning"
    assert status_of({"a": 97, "b": 32}) == "contraindicated"


def test_settings_are_checked() -> None:
    policy = AttestationPolicy()
    with pytest.raises(ConfigurationError):
        VerifierSettings(issuer="", policy=policy)
    with pytest.raises(ConfigurationError):
        VerifierSettings(issuer="x", policy=policy, token_lifetime=dt.timedelta(minutes=11))
    with pytest.raises(ConfigurationError):
        create_app(
            VerifierSettings(issuer="x", policy=policy),
            signing_key=ECKey.generate_key("P-384", private=True),
        )


VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "evidence"


def test_a_genuine_but_replayed_snp_report_cannot_bind_a_fresh_nonce(
    launcher: SimulatedLauncher, signing_key: ECKey, tee_jwk: Any
) -> None:
    import struct
    import uuid

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ask, ark = (
        c.public_bytes(serialization.Encoding.DER)
        for c in x509.load_pem_x509_certificates((VECTORS / "amd-milan-ask-ark.pem").read_bytes())
    )
    vcek = (VECTORS / "snp-milan-v2-virtee.vcek.der").read_bytes()
    guids = [
        "63da758d-e664-4564-adc5-f4b93be8accd",
        "4ab7b379-bbac-4fe4-a02f-05aef327c782",
        "c0b406a4-a803-4952-9743-3fb6014cd0ae",
    ]
    header, body = b"", b""
    for guid, der in zip(guids, (vcek, ask, ark), strict=True):
        header += uuid.UUID(guid).bytes + struct.pack("<II", 96 + len(body), len(der))
        body += der
    raw = (VECTORS / "snp-milan-v2-virtee.bin").read_bytes()
    evidence = Evidence(tee="sev-snp", raw=raw, aux=header + bytes(24) + body)
    measurement = raw[0x90:0xC0].hex()
    settings = VerifierSettings(
        issuer=ISSUER,
        policy=AttestationPolicy(allowed_tees={"sev-snp"}, allowed_measurements={measurement}),
    )
    client = TestClient(create_app(settings, signing_key=signing_key))
    nonce = client.post("/challenge").json()["nonce"]
    body_json = {"evidence": evidence.to_json(), "runtime-data": runtime_data_for(nonce, tee_jwk)}
    reply = client.post("/attest", json=body_json)
    assert (reply.status_code, reply.json()["rule"]) == (403, "report-data")  # signature passed
    tampered = Evidence(tee="sev-snp", raw=raw[:0x90] + bytes(48) + raw[0xC0:], aux=evidence.aux)
    nonce = client.post("/challenge").json()["nonce"]
    body_json = {"evidence": tampered.to_json(), "runtime-data": runtime_data_for(nonce, tee_jwk)}
    assert client.post("/attest", json=body_json).status_code == 400
    nonce = client.post("/challenge").json()["nonce"]
    body_json = {
        "evidence": evidence.to_json(),
        "runtime-data": runtime_data_for(nonce, tee_jwk),
        "endorsements": {"something": "else"},
    }
    assert client.post("/attest", json=body_json).status_code == 400
