"""Real SEV-SNP and SGX samples through verify_bound: the hardware verifier mapped to claims."""

import datetime as dt
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cleanroom.attestation import AttestationPolicy, VerifiedClaims, verify_bound
from cleanroom.attestation.ear import status_of, trustworthiness_vector
from cleanroom.errors import EvidenceError, PolicyViolation
from cleanroom.tee import Evidence

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "evidence"
_SAMPLES = json.loads((VECTORS / "expected_values.json").read_text())["samples"]
EXPECTED = {sample["file"]: sample for sample in _SAMPLES}
SNP_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SGX_TIME = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
GUIDS = {
    "vcek": "63da758d-e664-4564-adc5-f4b93be8accd",
    "ask": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    "ark": "c0b406a4-a803-4952-9743-3fb6014cd0ae",
}


def _cert_table(vcek: bytes) -> bytes:
    """The GHCB certificate table a configfs-tsm auxblob carries (VCEK, ASK, ARK)."""
    ask, ark = (
        c.public_bytes(serialization.Encoding.DER)
        for c in x509.load_pem_x509_certificates((VECTORS / "amd-milan-ask-ark.pem").read_bytes())
    )
    entries = [("vcek", vcek), ("ask", ask), ("ark", ark)]
    header_size = 24 * (len(entries) + 1)
    header, body = b"", b""
    for name, der in entries:
        offset = header_size + len(body)
        header += uuid.UUID(GUIDS[name]).bytes + struct.pack("<II", offset, len(der))
        body += der
    return header + bytes(24) + body


def _snp(name: str) -> tuple[Evidence, dict[str, Any]]:
    raw = (VECTORS / f"{name}.bin").read_bytes()
    aux = _cert_table((VECTORS / f"{name}.vcek.der").read_bytes())
    return Evidence(tee="sev-snp", raw=raw, aux=aux), EXPECTED[f"{name}.bin"]["report"]


def _snp_policy(expected: dict[str, Any], **overrides: Any) -> AttestationPolicy:
    settings: dict[str, Any] = {
        "allowed_tees": {"sev-snp"},
        "allowed_measurements": {expected["measurement"]},
        "max_evidence_age": None,  # real reports carry no time; freshness needs a nonce
    }
    settings.update(overrides)
    return AttestationPolicy(**settings)


def _verify_snp(name: str, **overrides: Any) -> VerifiedClaims:
    evidence, expected = _snp(name)
    return verify_bound(
        evidence,
        _snp_policy(expected, **overrides),
        report_data=bytes.fromhex(expected["report_data"]),
        now=SNP_TIME,
    )


def test_a_genuine_snp_report_maps_to_affirming_claims() -> None:
    claims = _verify_snp("snp-milan-v2-virtee")
    expected = EXPECTED["snp-milan-v2-virtee.bin"]["report"]
    assert (claims.tee, claims.measurement) == ("sev-snp", expected["measurement"])
    assert claims.config_id == expected["host_data"]
    assert claims.debug is False
    assert claims.simulated is False
    assert claims.extra["root"] == "AMD ARK-Milan"
    assert status_of(trustworthiness_vector(claims)) == "affirming"


def test_a_debug_snp_report_is_refused_unless_debug_is_allowed() -> None:
    with pytest.raises(PolicyViolation) as caught:
        _verify_snp("snp-milan-v2-gosev-debug")
    assert caught.value.rule == "debug"
    claims = _verify_snp("snp-milan-v2-gosev-debug", allow_debug=True)
    assert status_of(trustworthiness_vector(claims)) == "warning"


def test_real_reports_against_wrong_reference_values() -> None:
    with pytest.raises(PolicyViolation) as caught:
        _verify_snp("snp-milan-v2-virtee", allowed_measurements={"00" * 48})
    assert caught.value.rule == "measurement"
    with pytest.raises(PolicyViolation) as caught:
        _verify_snp("snp-milan-v2-virtee", required_config_id="11" * 32)
    assert caught.value.rule == "config-id"
    with pytest.raises(PolicyViolation) as caught:
        _verify_snp("snp-milan-v2-virtee", allowed_tees={"tdx"})
    assert caught.value.rule == "tee"


def test_a_tampered_snp_report_is_an_evidence_error() -> None:
    evidence, expected = _snp("snp-milan-v2-virtee")
    raw = bytearray(evidence.raw)
    raw[0x90] ^= 1  # one bit of MEASUREMENT
    with pytest.raises(EvidenceError):
        verify_bound(
            Evidence(tee="sev-snp", raw=bytes(raw), aux=evidence.aux),
            _snp_policy(expected),
            report_data=bytes.fromhex(expected["report_data"]),
            now=SNP_TIME,
        )


def test_sgx_quote_tcb_status_rules() -> None:
    quote = (VECTORS / "sgx-v3-dcapqvl.bin").read_bytes()
    collateral = (VECTORS / "sgx-v3-dcapqvl.collateral.json").read_text()
    expected = EXPECTED["sgx-v3-dcapqvl.bin"]["report"]
    base: dict[str, Any] = {
        "allowed_tees": {"sgx"},
        "allowed_measurements": {expected["mr_enclave"]},
        "max_evidence_age": None,
    }
    evidence = Evidence(tee="sgx", raw=quote)
    report_data = bytes.fromhex(expected["report_data"])
    with pytest.raises(PolicyViolation) as caught:
        verify_bound(
            evidence, AttestationPolicy(**base), report_data=report_data,
            collateral=collateral, now=SGX_TIME,
        )  # fmt: skip
    assert caught.value.rule == "tcb-status"
    lenient = AttestationPolicy(
        **base, allowed_tcb_statuses={"UpToDate", "ConfigurationAndSWHardeningNeeded"}
    )
    claims = verify_bound(
        evidence, lenient, report_data=report_data, collateral=collateral, now=SGX_TIME
    )
    assert (claims.tee, claims.signer) == ("sgx", expected["mr_signer"])
    assert claims.tcb_status == "ConfigurationAndSWHardeningNeeded"
    with pytest.raises(PolicyViolation) as caught:
        verify_bound(evidence, lenient, report_data=report_data, now=SGX_TIME)
    assert caught.value.rule == "tcb-status"  # no collateral: no TCB status
    unknown_ok = AttestationPolicy(**base, allow_unknown_tcb=True)
    assert verify_bound(evidence, unknown_ok, report_data=report_data, now=SGX_TIME).tee == "sgx"
    with pytest.raises(EvidenceError):
        verify_bound(
            Evidence(tee="tdx", raw=quote), unknown_ok, report_data=report_data, now=SGX_TIME
        )
