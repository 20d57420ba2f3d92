"""DCAP quote verification: signatures to the pinned Intel root, and dcap-qvl with collateral."""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cleanroom.attestation.hardware import (
    INTEL_SGX_ROOT_CA_PEM,
    INTEL_SGX_ROOT_CA_SHA256,
    collateral_from_pcs,
    parse_quote,
    verify_pcs_signed_json,
    verify_quote_signatures,
    verify_quote_with_collateral,
)
from cleanroom.attestation.hardware.dcap import _verify_quote_signatures
from cleanroom.attestation.hardware.quote import parse_quote_with_signature
from cleanroom.errors import EvidenceError

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "evidence"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def blob(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def text(name: str) -> str:
    return (VECTORS / name).read_text()


# A time inside each sample's collateral window (MANIFEST.md section 3).
WINDOW = {
    "sgx-v3-dcapqvl": at("2025-07-01T00:00:00"),
    "sgx-v3-occlum-debug": at("2025-07-01T00:00:00"),
    "tdx-v4-dcapqvl": at("2025-07-01T00:00:00"),
    "tdx-v5-dcapqvl-outdated": at("2026-03-01T00:00:00"),
    "tdx-v4-gotdx-spr": at("2023-07-01T01:00:00"),
    "tdx-v4-trustee-debug": at("2023-07-01T01:00:00"),
    "tdx-v4-trustee-gnr": at("2025-11-01T00:00:00"),
    "tdx-v5-gotdx": at("2026-02-15T00:00:00"),
}
# Intel's 2025-2032 "SGX TCB Signing" chain, as shipped in dcap-qvl's collateral.
TCB_CHAIN_2025 = json.loads(text("sgx-v3-dcapqvl.collateral.json"))["tcb_info_issuer_chain"]
TCB_CHAIN_2018 = text("gotdx-pcs-tcb-signing-chain.pem")


def gotdx_collateral() -> str:
    return collateral_from_pcs(
        tcb_info_response=text("gotdx-pcs-tcbinfo-50806f000000.json"),
        qe_identity_response=text("gotdx-pcs-qeidentity-tdqe.json"),
        tcb_info_issuer_chain=TCB_CHAIN_2018,
        pck_crl=blob("gotdx-pcs-pckcrl-platform.der"),
        pck_crl_issuer_chain=text("gotdx-pcs-pckcrl-issuer-chain.pem"),
        root_ca_crl=blob("gotdx-pcs-rootcrl.der"),
    )


def test_pinned_intel_root_is_the_vector_root() -> None:
    der = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM).public_bytes(
        serialization.Encoding.DER
    )
    assert der == blob("intel-sgx-root-ca.der")
    assert hashlib.sha256(der).hexdigest() == INTEL_SGX_ROOT_CA_SHA256


@pytest.mark.parametrize("name", list(WINDOW))
def test_every_quote_signature_chain_verifies_to_the_intel_root(name: str) -> None:
    verified = verify_quote_signatures(blob(f"{name}.bin"), now=WINDOW[name])
    assert verified.root == "Intel SGX Root CA"
    assert verified.checks == (
        "pck-chain",
        "validity",
        "qe-report-signature",
        "qe-report-binds-key",
        "quote-signature",
    )
    assert verified.tcb_status is None


def test_sgx_v3_quote_fully_verifies_with_collateral() -> None:
    verified = verify_quote_with_collateral(
        blob("sgx-v3-dcapqvl.bin"),
        text("sgx-v3-dcapqvl.collateral.json"),
        now=WINDOW["sgx-v3-dcapqvl"],
    )
    assert verified.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verified.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert "tcb-level" in verified.checks
    assert verified.report.measurement.startswith("33d8736d")


def test_tdx_v4_padded_quote_fully_verifies_with_collateral_as_up_to_date() -> None:
    verified = verify_quote_with_collateral(
        blob("tdx-v4-dcapqvl.bin"),
        text("tdx-v4-dcapqvl.collateral.json").encode(),
        now=WINDOW["tdx-v4-dcapqvl"],
    )
    assert verified.tcb_status == "UpToDate"
    assert verified.advisory_ids == ()
    assert verified.report.extra["trailing_bytes"] == 70


def test_tdx_v5_outdated_platform_matches_no_tcb_level_so_collateral_verification_fails() -> None:
    name = "tdx-v5-dcapqvl-outdated"
    verify_quote_signatures(blob(f"{name}.bin"), now=WINDOW[name])
    with pytest.raises(EvidenceError, match="No matching TCB level"):
        verify_quote_with_collateral(
            blob(f"{name}.bin"), text(f"{name}.collateral.json"), now=WINDOW[name]
        )


def test_spr_quote_with_raw_pcs_collateral_matches_no_tcb_level_as_upstream() -> None:
    with pytest.raises(EvidenceError, match="No matching TCB level"):
        verify_quote_with_collateral(
            blob("tdx-v4-gotdx-spr.bin"), gotdx_collateral(), now=WINDOW["tdx-v4-gotdx-spr"]
        )


def test_debug_td_is_refused_by_dcap_qvl_so_its_tcb_status_is_not_available_offline() -> None:
    name = "tdx-v4-trustee-debug"
    assert parse_quote(blob(f"{name}.bin")).debug is True
    verify_quote_signatures(blob(f"{name}.bin"), now=WINDOW[name])
    with pytest.raises(EvidenceError, match="Debug mode is enabled"):
        verify_quote_with_collateral(blob(f"{name}.bin"), gotdx_collateral(), now=WINDOW[name])


def test_gnr_quote_lacks_crls_for_offline_collateral_verification_but_tcb_info_verifies() -> None:
    name = "tdx-v4-trustee-gnr"
    report = verify_quote_signatures(blob(f"{name}.bin"), now=WINDOW[name]).report
    tcb_info = verify_pcs_signed_json(
        text("trustee-pcs-tcbinfo-00a06d080000.json"),
        key="tcbInfo",
        issuer_chain=TCB_CHAIN_2025,
        now=WINDOW[name],
    )
    assert tcb_info["fmspc"].lower() == report.extra["fmspc"]
    qe_identity = verify_pcs_signed_json(
        text("trustee-pcs-qeidentity-tdqe.json"),
        key="enclaveIdentity",
        issuer_chain=TCB_CHAIN_2025,
        now=WINDOW[name],
    )
    assert qe_identity["mrsigner"].lower() == report.extra["qe_mrsigner"]


def test_tdx_v5_gotdx_collateral_has_no_common_validity_time_so_only_items_verify() -> None:
    name = "tdx-v5-gotdx"
    report = verify_quote_signatures(blob(f"{name}.bin"), now=WINDOW[name]).report
    tcb_info = verify_pcs_signed_json(
        text("gotdx-pcs-tcbinfo-90c06f000000.json"),
        key="tcbInfo",
        issuer_chain=TCB_CHAIN_2025,
        now=WINDOW[name],
    )
    assert tcb_info["fmspc"].lower() == report.extra["fmspc"]
    # The QE identity is from 2023: it verifies then, under the 2018-2025 signing cert.
    verify_pcs_signed_json(
        text("gotdx-pcs-qeidentity-tdqe.json"),
        key="enclaveIdentity",
        issuer_chain=TCB_CHAIN_2018,
        now=at("2023-07-01T00:00:00"),
    )
    combined = collateral_from_pcs(
        tcb_info_response=text("gotdx-pcs-tcbinfo-90c06f000000.json"),
        qe_identity_response=text("gotdx-pcs-qeidentity-tdqe.json"),
        tcb_info_issuer_chain=TCB_CHAIN_2025,
        pck_crl=blob("gotdx-pcs-pckcrl-platform.der"),
        pck_crl_issuer_chain=text("gotdx-pcs-pckcrl-issuer-chain.pem"),
        root_ca_crl=blob("gotdx-pcs-rootcrl.der"),
    )
    with pytest.raises(EvidenceError, match=r"CrlExpired|Expired"):
        verify_quote_with_collateral(blob(f"{name}.bin"), combined, now=WINDOW[name])


def test_occlum_debug_quote_parses_and_verifies_but_lacks_tcb_info_for_offline_verification() -> (
    None
):
    verified = verify_quote_signatures(
        blob("sgx-v3-occlum-debug.bin"), now=WINDOW["sgx-v3-occlum-debug"]
    )
    assert verified.report.debug is True
    assert verified.report.extra["fmspc"] == "00606a000000"
    assert verified.tcb_status is None


def test_tcb_info_signature_fails_when_one_byte_changes() -> None:
    body = text("trustee-pcs-tcbinfo-00a06d080000.json").replace('"version":3', '"version":4', 1)
    with pytest.raises(EvidenceError, match="tcbInfo signature does not verify"):
        verify_pcs_signed_json(
            body, key="tcbInfo", issuer_chain=TCB_CHAIN_2025, now=WINDOW["tdx-v4-trustee-gnr"]
        )


def test_expired_tcb_signing_cert_is_refused() -> None:
    with pytest.raises(EvidenceError, match="not valid at"):
        verify_pcs_signed_json(
            text("trustee-pcs-tcbinfo-00a06d080000.json"),
            key="tcbInfo",
            issuer_chain=TCB_CHAIN_2018,  # ended 2025-05-21
            now=WINDOW["tdx-v4-trustee-gnr"],
        )


# Tampering, expiry and foreign roots.


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("sgx-v3-dcapqvl", 112),  # MRENCLAVE
        ("sgx-v3-dcapqvl", 368),  # REPORTDATA
        ("tdx-v4-dcapqvl", 184),  # MRTD
        ("tdx-v4-dcapqvl", 600),  # REPORTDATA
        ("tdx-v5-gotdx", 700),  # last signed byte of a v5 quote
        ("tdx-v4-trustee-gnr", 30),  # header user data
    ],
)
def test_one_flipped_byte_in_the_signed_region_fails(name: str, offset: int) -> None:
    with pytest.raises(EvidenceError, match="quote signature does not verify"):
        verify_quote_signatures(_flip(blob(f"{name}.bin"), offset), now=WINDOW[name])


def test_flipped_byte_in_the_signed_body_fails_collateral_verification_too() -> None:
    with pytest.raises(EvidenceError):
        verify_quote_with_collateral(
            _flip(blob("tdx-v4-dcapqvl.bin"), 200),
            text("tdx-v4-dcapqvl.collateral.json"),
            now=WINDOW["tdx-v4-dcapqvl"],
        )


def test_flipped_byte_in_the_qe_report_or_attestation_key_fails() -> None:
    data = blob("sgx-v3-dcapqvl.bin")
    sig_start = 436
    with pytest.raises(EvidenceError, match="QE report signature"):
        verify_quote_signatures(_flip(data, sig_start + 128 + 10), now=WINDOW["sgx-v3-dcapqvl"])
    with pytest.raises(EvidenceError, match="does not bind the attestation key"):
        verify_quote_signatures(_flip(data, sig_start + 64 + 3), now=WINDOW["sgx-v3-dcapqvl"])


def test_pck_certificate_is_refused_after_it_expires() -> None:
    # The SGX sample's PCK is valid 2023-09-20 .. 2030-09-20.
    with pytest.raises(EvidenceError, match="not valid at 2030-10-01"):
        verify_quote_signatures(blob("sgx-v3-dcapqvl.bin"), now=at("2030-10-01T00:00:00"))


def test_collateral_is_refused_outside_its_validity_window() -> None:
    with pytest.raises(EvidenceError, match="collateral verification failed"):
        verify_quote_with_collateral(
            blob("sgx-v3-dcapqvl.bin"),
            text("sgx-v3-dcapqvl.collateral.json"),
            now=at("2026-06-01T00:00:00"),
        )


def test_malformed_collateral_is_an_evidence_error() -> None:
    with pytest.raises(EvidenceError, match="collateral JSON is malformed"):
        verify_quote_with_collateral(blob("sgx-v3-dcapqvl.bin"), "{}", now=WINDOW["sgx-v3-dcapqvl"])
    with pytest.raises(EvidenceError, match="no signed 'tcbInfo'"):
        collateral_from_pcs(
            tcb_info_response='{"signature": "00"}',
            qe_identity_response=text("gotdx-pcs-qeidentity-tdqe.json"),
            tcb_info_issuer_chain=TCB_CHAIN_2018,
            pck_crl=b"",
            pck_crl_issuer_chain="",
            root_ca_crl=b"",
        )


def _ec_cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    sgx_extension: bool = True,
) -> x509.Certificate:
    now = WINDOW["sgx-v3-dcapqvl"]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=subject != "PCK", path_length=None), critical=True)
    )
    if subject == "PCK" and sgx_extension:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.840.113741.1.13.1"), b"\x30\x00"),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _forged_sgx_quote(sgx_extension: bool = True) -> tuple[bytes, x509.Certificate]:
    """The SGX sample, re-signed end to end under a self-made root (a well-formed v3 quote)."""
    _, parts = parse_quote_with_signature(blob("sgx-v3-dcapqvl.bin"))
    root_key, ca_key, pck_key, att_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "1234")
    root = _ec_cert("Intel SGX Root CA", "Intel SGX Root CA", root_key, root_key)
    ca = _ec_cert("Intel SGX PCK Processor CA", "Intel SGX Root CA", ca_key, root_key)
    pck = _ec_cert("PCK", "Intel SGX PCK Processor CA", pck_key, ca_key, sgx_extension)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (pck, ca, root))
    att_pub = att_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]
    qe_report = bytearray(parts.qe_report)
    qe_report[320:384] = hashlib.sha256(att_pub + parts.qe_auth_data).digest() + bytes(32)
    sig_data = (
        _raw_sig(att_key, parts.signed_region)
        + att_pub
        + bytes(qe_report)
        + _raw_sig(pck_key, bytes(qe_report))
        + struct.pack("<H", len(parts.qe_auth_data))
        + parts.qe_auth_data
        + struct.pack("<HI", 5, len(chain))
        + chain
    )
    return parts.signed_region + struct.pack("<I", len(sig_data)) + sig_data, root


def test_quote_chained_to_a_self_made_root_is_refused() -> None:
    forged, root = _forged_sgx_quote()
    with pytest.raises(EvidenceError, match="root other than the Intel SGX Root CA"):
        verify_quote_signatures(forged, now=WINDOW["sgx-v3-dcapqvl"])
    # With its own root as the anchor the same quote verifies: the pin alone refused it.
    verified = _verify_quote_signatures(forged, now=WINDOW["sgx-v3-dcapqvl"], root=root)
    assert verified.report.measurement == parse_quote(blob("sgx-v3-dcapqvl.bin")).measurement


def test_quote_without_a_pck_chain_cannot_be_verified_from_the_quote_alone() -> None:
    data = bytearray(blob("sgx-v3-dcapqvl.bin"))
    _, parts = parse_quote_with_signature(bytes(data))
    cert_type_offset = len(data) - len(parts.cert_data) - 6
    struct.pack_into("<H", data, cert_type_offset, 3)  # encrypted PPID, no chain
    with pytest.raises(EvidenceError, match="certification data type 3"):
        verify_quote_signatures(bytes(data), now=WINDOW["sgx-v3-dcapqvl"])


def test_leaf_without_the_sgx_extension_is_not_a_pck() -> None:
    forged, root = _forged_sgx_quote(sgx_extension=False)
    with pytest.raises(EvidenceError, match="no Intel SGX extension"):
        _verify_quote_signatures(forged, now=WINDOW["sgx-v3-dcapqvl"], root=root)
