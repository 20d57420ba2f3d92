"""Every policy rule, each with an input that breaks it; signature failures; the claims type."""

import datetime as dt
import logging
import pickle
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import cbor2
import pytest

from cleanroom.attestation import (
    RULES,
    AttestationPolicy,
    VerifiedClaims,
    runtime_data_for,
    verify,
    verify_bound,
)
from cleanroom.attestation.verify import _apply_policy, _Candidate
from cleanroom.errors import EvidenceError, PolicyViolation
from cleanroom.tee import Evidence, SimulatedLauncher

NONCE = "nonce-0123456789"
MEASUREMENT = "5e" * 48  # as in conftest.py
CONFIG_ID = "c0" * 32


def _policy(**overrides: Any) -> AttestationPolicy:
    settings: dict[str, Any] = {
        "allow_simulation": True,
        "allowed_measurements": {MEASUREMENT},
        "required_config_id": CONFIG_ID,
        "min_svn": 3,
    }
    settings.update(overrides)
    return AttestationPolicy(**settings)


def _verify(
    evidence: Evidence,
    policy: AttestationPolicy,
    launcher: SimulatedLauncher,
    jwk: Mapping[str, Any],
    *,
    nonce: str = NONCE,
    now: dt.datetime | None = None,
) -> VerifiedClaims:
    return verify(
        evidence,
        policy,
        nonce=nonce,
        runtime_data=runtime_data_for(NONCE, jwk),
        trusted_roots=[launcher.root_certificate],
        now=now,
    )


def test_good_simulated_evidence_verifies_and_warns(
    make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any, caplog: Any
) -> None:
    with caplog.at_level(logging.WARNING):
        claims = _verify(make_evidence(), _policy(), launcher, tee_jwk)
    assert (claims.tee, claims.measurement, claims.config_id) == (
        "simulated",
        MEASUREMENT,
        CONFIG_ID,
    )
    assert (claims.svn, claims.debug, claims.simulated, claims.nonce) == (3, True, True, NONCE)
    assert dict(claims.tee_pubkey or {}) == dict(tee_jwk)
    assert any("INSECURE" in r.getMessage() for r in caplog.records)


def _rule(excinfo: pytest.ExceptionInfo[PolicyViolation]) -> str:
    return excinfo.value.rule


def test_rule_nonce(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    with pytest.raises(PolicyViolation) as caught:
        _verify(make_evidence(), _policy(), launcher, tee_jwk, nonce="another-nonce-123")
    assert _rule(caught) == "nonce"


def test_rule_report_data(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    evidence = make_evidence("a-different-nonce")  # evidence binds another nonce
    with pytest.raises(PolicyViolation) as caught:
        _verify(evidence, _policy(), launcher, tee_jwk)
    assert _rule(caught) == "report-data"


def test_rule_simulation_default_policy_refuses(
    make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    production = AttestationPolicy(
        allowed_tees={"sev-snp", "tdx", "sgx"}, allowed_measurements={MEASUREMENT}
    )
    for policy in (production, AttestationPolicy()):
        with pytest.raises(PolicyViolation) as caught:
            _verify(make_evidence(), policy, launcher, tee_jwk)
        assert _rule(caught) == "simulation"


def test_rule_measurement(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    with pytest.raises(PolicyViolation) as caught:
        _verify(make_evidence(measurement="5f" * 48), _policy(), launcher, tee_jwk)
    assert _rule(caught) == "measurement"


def test_rule_config_id(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    for config_id in ("c1" * 32, None):
        with pytest.raises(PolicyViolation) as caught:
            _verify(make_evidence(config_id=config_id), _policy(), launcher, tee_jwk)
        assert _rule(caught) == "config-id"


def test_rule_svn(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    with pytest.raises(PolicyViolation) as caught:
        _verify(make_evidence(), _policy(min_svn=4), launcher, tee_jwk)
    assert _rule(caught) == "svn"


def test_rule_evidence_age(make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any) -> None:
    evidence = make_evidence()
    now = dt.datetime.now(dt.UTC)
    for later in (now + dt.timedelta(minutes=6), now - dt.timedelta(minutes=2)):
        with pytest.raises(PolicyViolation) as caught:
            _verify(evidence, _policy(), launcher, tee_jwk, now=later)
        assert _rule(caught) == "evidence-age"
    old_ok = _policy(max_evidence_age=dt.timedelta(hours=1))
    _verify(evidence, old_ok, launcher, tee_jwk, now=now + dt.timedelta(minutes=30))


_BASE = _Candidate(
    tee="tdx",
    measurement="aa" * 48,
    config_id=None,
    svn="0" * 32,
    debug=False,
    report_data=b"\1" * 64,
    signer="bb" * 48,
    tcb_status="UpToDate",
)


def _hw_policy(**overrides: Any) -> AttestationPolicy:
    settings: dict[str, Any] = {"allowed_tees": {"tdx"}, "allowed_measurements": {"aa" * 48}}
    settings.update(overrides)
    return AttestationPolicy(**settings)


@pytest.mark.parametrize(
    ("candidate", "policy", "rule"),
    [
        (_BASE, _hw_policy(allowed_tees={"sgx"}), "tee"),
        (replace(_BASE, debug=True), _hw_policy(), "debug"),
        (_BASE, _hw_policy(allowed_signers={"cc" * 48}), "signer"),
        (replace(_BASE, svn="00" * 15 + "01"), _hw_policy(min_tee_tcb_svn="00" * 15 + "02"), "svn"),
        (_BASE, _hw_policy(min_svn=1), "svn"),
        (replace(_BASE, tcb_status="OutOfDate"), _hw_policy(), "tcb-status"),
        (replace(_BASE, tcb_status=None), _hw_policy(), "tcb-status"),
    ],
)
def test_hardware_rules(candidate: _Candidate, policy: AttestationPolicy, rule: str) -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(PolicyViolation) as caught:
        _apply_policy(candidate, policy, b"\1" * 64, now, nonce_bound=True)
    assert _rule(caught) == rule


def test_hardware_rules_pass_and_opt_ins_work() -> None:
    now = dt.datetime.now(dt.UTC)
    _apply_policy(_BASE, _hw_policy(allowed_signers={"BB" * 48}), b"\1" * 64, now, True)
    _apply_policy(replace(_BASE, debug=True), _hw_policy(allow_debug=True), b"\1" * 64, now, True)
    unknown = replace(_BASE, tcb_status=None)
    _apply_policy(unknown, _hw_policy(allow_unknown_tcb=True), b"\1" * 64, now, True)
    # Without a nonce and without a timestamp, freshness cannot be shown.
    with pytest.raises(PolicyViolation) as caught:
        _apply_policy(_BASE, _hw_policy(), b"\1" * 64, now, nonce_bound=False)
    assert _rule(caught) == "evidence-age"


def test_every_rule_is_named_in_rules() -> None:
    assert set(RULES) == {
        "nonce", "report-data", "simulation", "tee", "debug", "measurement", "signer",
        "config-id", "svn", "tcb-status", "evidence-age",
    }  # fmt: skip


def _tamper(raw: bytes, field: str) -> bytes:
    outer = cbor2.loads(raw)
    if field == "report":
        report = cbor2.loads(outer["report"])
        report["measurement"] = b"\x00" * 48
        outer["report"] = cbor2.dumps(report, canonical=True)
    else:
        sig = bytearray(outer["signature"])
        sig[-1] ^= 1
        outer["signature"] = bytes(sig)
    return bytes(cbor2.dumps(outer, canonical=True))


@pytest.mark.parametrize("field", ["report", "signature"])
def test_tampered_evidence_is_an_evidence_error(
    make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any, field: str
) -> None:
    evidence = make_evidence()
    tampered = Evidence(tee="simulated", raw=_tamper(evidence.raw, field))
    with pytest.raises(EvidenceError):
        _verify(tampered, _policy(), launcher, tee_jwk)


def test_an_untrusted_root_or_expired_platform_cert_is_an_evidence_error(
    make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    evidence = make_evidence()
    stranger = SimulatedLauncher(allow_simulation=True)
    with pytest.raises(EvidenceError):
        _verify(evidence, _policy(), stranger, tee_jwk)
    with pytest.raises(EvidenceError):
        verify(
            evidence,
            _policy(),
            nonce=NONCE,
            runtime_data=runtime_data_for(NONCE, tee_jwk),
            trusted_roots=[],
        )
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    with pytest.raises(EvidenceError):
        _verify(evidence, _policy(max_evidence_age=None), launcher, tee_jwk, now=far)


def test_malformed_hardware_evidence_is_an_evidence_error(
    launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    with pytest.raises(EvidenceError):
        _verify(Evidence(tee="sev-snp", raw=b"\0" * 1184), _policy(), launcher, tee_jwk)


def test_verify_bound_needs_the_exact_report_data(
    make_evidence: Any, launcher: SimulatedLauncher
) -> None:
    evidence = launcher.sign_report(measurement=MEASUREMENT, config_id=None, report_data=b"x")
    policy = _policy(required_config_id=None)
    claims = verify_bound(
        evidence,
        policy,
        report_data=b"x".ljust(64, b"\0"),
        trusted_roots=[launcher.root_certificate],
    )
    assert claims.nonce is None
    with pytest.raises(PolicyViolation) as caught:
        verify_bound(
            evidence, policy, report_data=b"y".ljust(64, b"\0"),
            trusted_roots=[launcher.root_certificate],
        )  # fmt: skip
    assert _rule(caught) == "report-data"


def test_verified_claims_cannot_be_forged_changed_or_pickled(
    make_evidence: Any, launcher: SimulatedLauncher, tee_jwk: Any
) -> None:
    claims = _verify(make_evidence(), _policy(), launcher, tee_jwk)
    with pytest.raises(TypeError):
        VerifiedClaims(tee="tdx")
    with pytest.raises(TypeError):
        VerifiedClaims(_token=object(), tee="tdx")
    with pytest.raises(AttributeError):
        claims.debug = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        claims.tee_pubkey["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        pickle.dumps(claims)
