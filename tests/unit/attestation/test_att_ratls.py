"""RA-TLS certificates built in process (the real-process test is in tests/integration)."""

import datetime as dt
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.attestation import (
    RATLS_OID,
    AttestationPolicy,
    attested_ssl_context,
    create_attested_certificate,
    verify_attested_certificate,
)
from cleanroom.errors import EvidenceError, PolicyViolation
from cleanroom.tee import Evidence, SimulatedLauncher

MEASUREMENT = "5e" * 48


class LauncherBackedPlatform:
    """The enclave side without a process: reports signed by the launcher directly."""

    tee = "simulated"

    def __init__(self, launcher: SimulatedLauncher) -> None:
        self.launcher = launcher

    def evidence(self, report_data: bytes) -> Evidence:
        return self.launcher.sign_report(
            measurement=MEASUREMENT, config_id=None, report_data=report_data
        )


def _policy(**kw: Any) -> AttestationPolicy:
    return AttestationPolicy(allow_simulation=True, allowed_measurements={MEASUREMENT}, **kw)


def test_certificate_verifies_and_carries_tag_60000(launcher: SimulatedLauncher) -> None:
    _key, cert = create_attested_certificate(LauncherBackedPlatform(launcher))
    value = cert.extensions.get_extension_for_oid(RATLS_OID)
    assert value.critical is False
    tagged = cbor2.loads(value.value.value)  # type: ignore[attr-defined]
    assert tagged.tag == 60000
    assert len(tagged.value) == 2
    claims = verify_attested_certificate(cert, _policy(), trusted_roots=[launcher.root_certificate])
    assert claims.simulated
    assert claims.measurement == MEASUREMENT
    context = attested_ssl_context(cert, _policy(), trusted_roots=[launcher.root_certificate])
    assert context.check_hostname is False
    assert context.cert_store_stats()["x509"] == 1


def _forge(cert: x509.Certificate, claims: bytes | None = None) -> x509.Certificate:
    """A new self-signed certificate with another key and (a copy of) cert's evidence."""
    key = ec.generate_private_key(ec.SECP384R1())
    value = cert.extensions.get_extension_for_oid(RATLS_OID).value.value  # type: ignore[attr-defined]
    if claims is not None:
        tagged = cbor2.loads(value)
        value = cbor2.dumps(cbor2.CBORTag(60000, [tagged.value[0], claims]))
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.UnrecognizedExtension(RATLS_OID, value), critical=False)
        .sign(key, hashes.SHA384())
    )


def test_a_key_that_does_not_match_the_evidence_is_refused(launcher: SimulatedLauncher) -> None:
    from cleanroom.attestation.ratls import ratls_claims

    roots = [launcher.root_certificate]
    _key, cert = create_attested_certificate(LauncherBackedPlatform(launcher))
    copied = _forge(cert)
    with pytest.raises(PolicyViolation) as caught:
        attested_ssl_context(copied, _policy(), trusted_roots=roots)
    assert caught.value.rule == "tls-key"
    # Claims rewritten for the new key: then the evidence no longer binds the claims.
    new_key = _forge(cert)
    rewritten = _forge(cert, claims=ratls_claims(new_key.public_key(), "simulated"))  # type: ignore[arg-type]
    with pytest.raises(PolicyViolation) as caught:
        verify_attested_certificate(rewritten, _policy(), trusted_roots=roots)
    assert caught.value.rule in {"tls-key", "report-data"}


def test_policy_and_format_failures(launcher: SimulatedLauncher) -> None:
    roots = [launcher.root_certificate]
    key, cert = create_attested_certificate(LauncherBackedPlatform(launcher))
    with pytest.raises(PolicyViolation) as caught:
        verify_attested_certificate(
            cert, AttestationPolicy(allowed_tees={"tdx"}), trusted_roots=roots
        )
    assert caught.value.rule == "simulation"
    with pytest.raises(EvidenceError):
        verify_attested_certificate(b"not a certificate", _policy(), trusted_roots=roots)
    now = dt.datetime.now(dt.UTC)
    plain = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA384())
    )
    with pytest.raises(EvidenceError, match="no attestation evidence"):
        verify_attested_certificate(plain, _policy(), trusted_roots=roots)


def test_an_expired_certificate_is_refused(launcher: SimulatedLauncher) -> None:
    _key, cert = create_attested_certificate(LauncherBackedPlatform(launcher))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(EvidenceError, match="validity"):
        verify_attested_certificate(
            cert,
            _policy(max_evidence_age=None),
            trusted_roots=[launcher.root_certificate],
            now=later,
        )
