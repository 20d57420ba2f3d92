"""Remote attestation: appraise evidence, issue and check EAR tokens, attested TLS.

- :func:`verify` / :func:`verify_bound` turn :class:`~cleanroom.tee.Evidence` into
  :class:`VerifiedClaims` under an :class:`AttestationPolicy` (deny by default), or raise
  :class:`~cleanroom.errors.EvidenceError` / :class:`~cleanroom.errors.PolicyViolation`.
- :func:`report_data_for` binds a verifier nonce and the enclave key (KBS style).
- :func:`create_app` is the verifier service; :func:`verify_ear_token` checks its tokens.
- :func:`attested_httpx_client` / :func:`attested_ssl_context` speak RA-TLS to an enclave.

Formats are in ``docs/attestation.md``.
"""

from cleanroom.attestation.claims import VerifiedClaims
from cleanroom.attestation.client import request_ear_token
from cleanroom.attestation.ear import EAR_PROFILE, EarClaims, issue_ear_token, verify_ear_token
from cleanroom.attestation.nonces import NonceStore
from cleanroom.attestation.policy import RULES, AttestationPolicy, policy_id
from cleanroom.attestation.ratls import (
    RATLS_OID,
    attested_httpx_client,
    attested_httpx_client_with_claims,
    attested_ssl_context,
    create_attested_certificate,
    fetch_server_certificate,
    verify_attested_certificate,
)
from cleanroom.attestation.report_data import (
    report_data_for,
    report_data_for_runtime_data,
    runtime_data_for,
)
from cleanroom.attestation.service import VerifierSettings, create_app, new_signing_key
from cleanroom.attestation.verify import verify, verify_bound

__all__ = [
    "EAR_PROFILE",
    "RATLS_OID",
    "RULES",
    "AttestationPolicy",
    "EarClaims",
    "NonceStore",
    "VerifiedClaims",
    "VerifierSettings",
    "attested_httpx_client",
    "attested_httpx_client_with_claims",
    "attested_ssl_context",
    "create_app",
    "create_attested_certificate",
    "fetch_server_certificate",
    "issue_ear_token",
    "new_signing_key",
    "policy_id",
    "report_data_for",
    "report_data_for_runtime_data",
    "request_ear_token",
    "runtime_data_for",
    "verify",
    "verify_attested_certificate",
    "verify_bound",
    "verify_ear_token",
]
