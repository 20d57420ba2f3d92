"""verify_hardware_evidence picks the right verifier and refuses mislabelled evidence."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cleanroom.attestation.hardware import verify_hardware_evidence
from cleanroom.errors import EvidenceError

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "evidence"
SGX_TIME = datetime(2025, 7, 1, tzinfo=UTC)


def blob(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def table(entries: list[tuple[str, bytes]]) -> bytes:
    header_size = 24 * (len(entries) + 1)
    header, body = b"", b""
    for guid, der in entries:
        header += uuid.UUID(guid).bytes + struct.pack("<II", header_size + len(body), len(der))
        body += der
    return header + bytes(24) + body


def ask_ark(chain: str) -> list[bytes]:
    certs = x509.load_pem_x509_certificates(blob(chain))
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


VCEK_GUID = "63da758d-e664-4564-adc5-f4b93be8accd"
VLEK_GUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
ASK_GUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
ARK_GUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"


def test_snp_evidence_with_a_full_cert_table_verifies() -> None:
    ask, ark = ask_ark("amd-milan-ask-ark.pem")
    aux = table(
        [(VCEK_GUID, blob("snp-milan-v2-virtee.vcek.der")), (ASK_GUID, ask), (ARK_GUID, ark)]
    )
    verified = verify_hardware_evidence(
        "sev-snp", blob("snp-milan-v2-virtee.bin"), aux=aux, now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert verified.root == "AMD ARK-Milan"


def test_vlek_evidence_needs_the_asvk_chain_from_elsewhere() -> None:
    aux = table([(VLEK_GUID, blob("snp-milan-v3-vlek-aws.vlek.der"))])
    when = datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(EvidenceError, match="pinned AMD root key"):
        verify_hardware_evidence("sev-snp", blob("snp-milan-v3-vlek-aws.bin"), aux=aux, now=when)
    verified = verify_hardware_evidence(
        "sev-snp",
        blob("snp-milan-v3-vlek-aws.bin"),
        aux=aux,
        amd_cert_chain=blob("amd-milan-ask-ark-asvk.pem"),
        now=when,
    )
    assert verified.endorsement == "VLEK"


def test_snp_evidence_without_a_cert_table_is_refused() -> None:
    with pytest.raises(EvidenceError, match="no certificate table"):
        verify_hardware_evidence("sev-snp", blob("snp-milan-v2-virtee.bin"))
    with pytest.raises(EvidenceError, match="no VCEK or VLEK"):
        verify_hardware_evidence("sev-snp", blob("snp-milan-v2-virtee.bin"), aux=bytes(24))


def test_quote_with_and_without_collateral() -> None:
    quote = blob("sgx-v3-dcapqvl.bin")
    bare = verify_hardware_evidence("sgx", quote, now=SGX_TIME)
    assert bare.tcb_status is None
    full = verify_hardware_evidence(
        "sgx", quote, collateral=blob("sgx-v3-dcapqvl.collateral.json"), now=SGX_TIME
    )
    assert full.tcb_status == "ConfigurationAndSWHardeningNeeded"


def test_mislabelled_or_unknown_evidence_is_refused() -> None:
    with pytest.raises(EvidenceError, match="labelled 'tdx' but holds a 'sgx' quote"):
        verify_hardware_evidence("tdx", blob("sgx-v3-dcapqvl.bin"), now=SGX_TIME)
    with pytest.raises(EvidenceError, match="exactly 1184 bytes"):
        verify_hardware_evidence("sev-snp", blob("tdx-v4-dcapqvl.bin"), aux=bytes(24))
    with pytest.raises(EvidenceError, match="no hardware verifier"):
        verify_hardware_evidence("simulated", b"x")
    with pytest.raises(EvidenceError, match="takes no certificate table"):
        verify_hardware_evidence("sgx", blob("sgx-v3-dcapqvl.bin"), aux=b"x", now=SGX_TIME)
