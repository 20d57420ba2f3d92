"""No single-bit change to simulated evidence or to an attested certificate is accepted."""

from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from cleanroom.attestation import (
    AttestationPolicy,
    VerifiedClaims,
    create_attested_certificate,
    report_data_for,
    runtime_data_for,
    verify,
    verify_attested_certificate,
)
from cleanroom.errors import AttestationError
from cleanroom.tee import Evidence, SimulatedLauncher

MEASUREMENT = "5e" * 48
NONCE = "nonce-0123456789"
POLICY = AttestationPolicy(
    allow_simulation=True, allowed_measurements={MEASUREMENT}, max_evidence_age=None
)
_LAUNCHER = SimulatedLauncher(allow_simulation=True)
_JWK = ECKey.generate_key("P-256", private=True).as_dict(private=False)
_EVIDENCE = _LAUNCHER.sign_report(
    measurement=MEASUREMENT, config_id=None, report_data=report_data_for(NONCE, _JWK)
)


def _verify(evidence: Evidence) -> VerifiedClaims:
    return verify(
        evidence,
        POLICY,
        nonce=NONCE,
        runtime_data=runtime_data_for(NONCE, _JWK),
        trusted_roots=[_LAUNCHER.root_certificate],
    )


def test_the_unmodified_evidence_verifies() -> None:
    assert _verify(_EVIDENCE).measurement == MEASUREMENT


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, len(_EVIDENCE.raw) * 8 - 1))
def test_any_flipped_bit_is_refused(bit: int) -> None:
    raw = bytearray(_EVIDENCE.raw)
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        _verify(Evidence(tee="simulated", raw=bytes(raw)))
    except AttestationError:
        return
    raise AssertionError(f"bit {bit} flipped and the evidence still verified")


class _Platform:
    tee = "simulated"

    def evidence(self, report_data: bytes) -> Evidence:
        return _LAUNCHER.sign_report(
            measurement=MEASUREMENT, config_id=None, report_data=report_data
        )


_CERT_DER = create_attested_certificate(_Platform())[1].public_bytes(serialization.Encoding.DER)


def test_the_unmodified_certificate_verifies() -> None:
    roots = [_LAUNCHER.root_certificate]
    assert verify_attested_certificate(_CERT_DER, POLICY, trusted_roots=roots).simulated


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(0, len(_CERT_DER) * 8 - 1))
def test_any_flipped_bit_of_an_attested_certificate_is_refused(bit: int) -> None:
    der = bytearray(_CERT_DER)
    der[bit // 8] ^= 1 << (bit % 8)
    try:
        verify_attested_certificate(bytes(der), POLICY, trusted_roots=[_LAUNCHER.root_certificate])
    except AttestationError:
        return
    raise AssertionError(f"bit {bit} flipped and the certificate still verified")
