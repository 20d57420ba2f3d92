"""The public surface of cleanroom.attestation.hardware is pinned."""

import cleanroom.attestation.hardware as hardware


def test_public_names_are_pinned() -> None:
    assert sorted(hardware.__all__) == [
        "AMD_ARK_SPKI_SHA256",
        "HardwareReport",
        "HardwareVerification",
        "INTEL_SGX_ROOT_CA_PEM",
        "INTEL_SGX_ROOT_CA_SHA256",
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
    for name in hardware.__all__:
        obj = getattr(hardware, name)
        if callable(obj):
            assert obj.__doc__, name
