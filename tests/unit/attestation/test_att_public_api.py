import cleanroom.attestation


def test_public_names_are_pinned() -> None:
    assert sorted(cleanroom.attestation.__all__) == sorted([
        "EAR_PROFILE", "RATLS_OID", "RULES", "AttestationPolicy", "EarClaims", "NonceStore",
        "VerifiedClaims", "VerifierSettings", "attested_httpx_client",
        "attested_httpx_client_with_claims", "attested_ssl_context", "create_app",
        "create_attested_certificate", "fetch_server_certificate", "issue_ear_token",
        "new_signing_key", "policy_id", "report_data_for", "report_data_for_runtime_data",
        "request_ear_token", "runtime_data_for", "verify", "verify_attested_certificate",
        "verify_bound", "verify_ear_token",
    ])  # fmt: skip
    for name in cleanroom.attestation.__all__:
        obj = getattr(cleanroom.attestation, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"
