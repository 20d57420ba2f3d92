"""Real TEE evidence: parse and verify AMD SEV-SNP reports and Intel SGX/TDX DCAP quotes.

Parsers return a :class:`HardwareReport` (nothing verified); verifiers return a
:class:`HardwareVerification` naming the root of trust and every check that passed.
Every failure is a :class:`cleanroom.errors.EvidenceError`. Byte layouts and what is and
is not verified: ``docs/evidence.md``.

    report = parse_snp_report(blob)
    verified = verify_snp_report(blob, endorsement_key_cert=vcek_der, cert_chain=ask_ark_pem)
    verified = verify_quote_with_collateral(quote, collateral_json)
    verified = verify_hardware_evidence("sev-snp", report, aux=auxblob)
"""

from cleanroom.attestation.hardware._report import HardwareReport, HardwareVerification
from cleanroom.attestation.hardware.amd_chain import (
    AMD_ARK_SPKI_SHA256,
    endorsement_key_tcb,
    kds_vcek_url,
    parse_snp_cert_table,
    verify_snp_report,
)
from cleanroom.attestation.hardware.dcap import (
    INTEL_SGX_ROOT_CA_PEM,
    INTEL_SGX_ROOT_CA_SHA256,
    collateral_from_pcs,
    verify_pcs_signed_json,
    verify_quote_signatures,
    verify_quote_with_collateral,
)
from cleanroom.attestation.hardware.dispatch import verify_hardware_evidence
from cleanroom.attestation.hardware.quote import parse_quote, parse_sgx_quote, parse_tdx_quote
from cleanroom.attestation.hardware.snp import parse_snp_report

__all__ = [
    "AMD_ARK_SPKI_SHA256",
    "INTEL_SGX_ROOT_CA_PEM",
    "INTEL_SGX_ROOT_CA_SHA256",
    "HardwareReport",
    "HardwareVerification",
    "collateral_from_pcs",
    "endorsement_key_tcb",
    "kds_vcek_url",
    "parse_quote",
    "parse_sgx_quote",
    "parse_snp_cert_table",
    "parse_snp_report",
    "parse_tdx_quote",
    "verify_hardware_evidence",
    "verify_pcs_signed_json",
    "verify_quote_signatures",
    "verify_quote_with_collateral",
    "verify_snp_report",
]
