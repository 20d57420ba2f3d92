"""Appraise evidence: signature first, then the policy rules, then :class:`VerifiedClaims`.

The order is fixed (see :data:`cleanroom.attestation.policy.RULES`): a signature or format
failure raises :class:`EvidenceError`; a genuine report that breaks a rule raises
:class:`PolicyViolation` whose ``rule`` names the first rule that failed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from cleanroom.attestation.claims import _VERIFIER_TOKEN, VerifiedClaims
from cleanroom.attestation.policy import AttestationPolicy
from cleanroom.attestation.report_data import check_public_jwk, report_data_for_runtime_data
from cleanroom.errors import EvidenceError, PolicyViolation
from cleanroom.tee._base import REPORT_DATA_SIZE, Evidence
from cleanroom.tee.simulated import decode_simulated_evidence, verify_simulated_signature

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """Fields read from evidence whose signature verified, before the policy is applied."""

    tee: str
    measurement: str
    config_id: str | None
    svn: int | str
    debug: bool
    report_data: bytes
    signer: str | None = None
    product_id: int | str | None = None
    rtmrs: tuple[str, ...] = ()
    tcb_status: str | None = None
    evidence_time: dt.datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _resolve_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise EvidenceError("verification time must be timezone-aware")
    return now.astimezone(dt.UTC)


def _simulated_candidate(
    evidence: Evidence, trusted_roots: Sequence[x509.Certificate], now: dt.datetime
) -> _Candidate:
    decoded = decode_simulated_evidence(evidence.raw)
    verify_simulated_signature(decoded, trusted_roots, now)
    report = decoded.report
    return _Candidate(
        tee="simulated",
        measurement=report.measurement.hex(),
        config_id=None if report.config_id is None else report.config_id.hex(),
        svn=report.svn,
        debug=report.debug,
        report_data=report.report_data,
        evidence_time=dt.datetime.fromtimestamp(report.timestamp, dt.UTC),
    )


def _hardware_candidate(
    evidence: Evidence,
    now: dt.datetime,
    collateral: str | bytes | None,
    amd_cert_chain: bytes | Sequence[bytes] | None,
) -> _Candidate:
    """Verify real SEV-SNP/TDX/SGX evidence with the hardware package, then map its report."""
    from cleanroom.attestation.hardware import verify_hardware_evidence

    verified = verify_hardware_evidence(
        evidence.tee,
        evidence.raw,
        aux=evidence.aux,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
        now=now,
    )
    report = verified.report
    return _Candidate(
        tee=report.tee,
        measurement=report.measurement,
        config_id=None if report.config_id is None else report.config_id.hex(),
        svn=report.svn,
        debug=report.debug,
        report_data=report.report_data,
        signer=report.signer,
        product_id=report.product_id,
        rtmrs=tuple(report.rtmrs),
        tcb_status=verified.tcb_status,
        extra={
            "root": verified.root,
            "endorsement": verified.endorsement,
            "checks": list(verified.checks),
            "advisory-ids": list(verified.advisory_ids),
            "report": dict(report.extra),
        },
    )


def _svn_at_least(svn: int | str, policy: AttestationPolicy) -> bool:
    if isinstance(svn, int):
        return svn >= policy.min_svn
    # TDX: TEE_TCB_SVN is a byte string; compare component-wise.
    if policy.min_svn:
        return False
    if policy.min_tee_tcb_svn is None:
        return True
    have, need = bytes.fromhex(svn), bytes.fromhex(policy.min_tee_tcb_svn)
    return len(have) == len(need) and all(h >= n for h, n in zip(have, need, strict=True))


def _apply_policy(
    c: _Candidate,
    policy: AttestationPolicy,
    expected_report_data: bytes,
    now: dt.datetime,
    nonce_bound: bool,
) -> None:
    if not hmac.compare_digest(c.report_data, expected_report_data):
        raise PolicyViolation("report-data", "the evidence does not bind the expected data")
    simulated = c.tee == "simulated"
    if simulated and not policy.allow_simulation:
        raise PolicyViolation("simulation", "simulated evidence is refused by this policy")
    if c.tee not in policy.allowed_tees:
        raise PolicyViolation("tee", f"TEE type {c.tee!r} is not allowed")
    if c.debug and not (policy.allow_debug or (simulated and policy.allow_simulation)):
        raise PolicyViolation("debug", "the enclave runs in debug mode")
    if not any(hmac.compare_digest(c.measurement, m) for m in policy.allowed_measurements):
        raise PolicyViolation("measurement", "the measurement is not an allowed reference value")
    if policy.allowed_signers and not (
        c.signer is not None
        and any(hmac.compare_digest(c.signer, s) for s in policy.allowed_signers)
    ):
        raise PolicyViolation("signer", "the signer is not allowed")
    if policy.required_config_id is not None and not (
        c.config_id is not None and hmac.compare_digest(c.config_id, policy.required_config_id)
    ):
        raise PolicyViolation("config-id", "the config id is not the required one")
    if not _svn_at_least(c.svn, policy):
        raise PolicyViolation("svn", "the security version is below the minimum")
    if c.tee in ("sgx", "tdx"):
        if c.tcb_status is None and not policy.allow_unknown_tcb:
            raise PolicyViolation("tcb-status", "no TCB status (verified without collateral)")
        if c.tcb_status is not None and c.tcb_status not in policy.allowed_tcb_statuses:
            raise PolicyViolation("tcb-status", f"TCB status {c.tcb_status!r} is not allowed")
    if policy.max_evidence_age is not None:
        if c.evidence_time is None:
            if not nonce_bound:
                raise PolicyViolation(
                    "evidence-age", "the evidence has no timestamp and no nonce binds it"
                )
        else:
            if c.evidence_time > now + policy.clock_skew:
                raise PolicyViolation("evidence-age", "the evidence is dated in the future")
            if now - c.evidence_time > policy.max_evidence_age + policy.clock_skew:
                raise PolicyViolation("evidence-age", "the evidence is too old")


def _appraise(
    evidence: Evidence,
    policy: AttestationPolicy,
    *,
    expected_report_data: bytes,
    trusted_roots: Sequence[x509.Certificate],
    now: dt.datetime | None,
    nonce: str | None,
    tee_pubkey: Mapping[str, Any] | None,
    collateral: str | bytes | None,
    amd_cert_chain: bytes | Sequence[bytes] | None,
) -> VerifiedClaims:
    if not isinstance(evidence, Evidence):
        raise EvidenceError("evidence must be a cleanroom.tee.Evidence")
    if not isinstance(policy, AttestationPolicy):
        raise TypeError("policy must be an AttestationPolicy")
    when = _resolve_now(now)
    if evidence.tee == "simulated":
        candidate = _simulated_candidate(evidence, trusted_roots, when)
    else:
        candidate = _hardware_candidate(evidence, when, collateral, amd_cert_chain)
    _apply_policy(candidate, policy, expected_report_data, when, nonce is not None)
    if candidate.tee == "simulated":
        _log.warning(
            "INSECURE: accepted simulated TEE evidence (measurement %s...) because the "
            "policy sets allow_simulation=True",
            candidate.measurement[:16],
        )
    return VerifiedClaims(
        _token=_VERIFIER_TOKEN,
        tee=candidate.tee,
        measurement=candidate.measurement,
        config_id=candidate.config_id,
        svn=candidate.svn,
        debug=candidate.debug,
        simulated=candidate.tee == "simulated",
        report_data=candidate.report_data,
        signer=candidate.signer,
        product_id=candidate.product_id,
        rtmrs=candidate.rtmrs,
        tcb_status=candidate.tcb_status,
        evidence_time=candidate.evidence_time,
        verified_at=when,
        nonce=nonce,
        tee_pubkey=tee_pubkey,
        extra=candidate.extra,
    )


def verify(
    evidence: Evidence,
    policy: AttestationPolicy,
    *,
    nonce: str,
    runtime_data: Mapping[str, Any],
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    now: dt.datetime | None = None,
) -> VerifiedClaims:
    """Appraise ``evidence`` bound to a verifier ``nonce`` and the enclave's ``runtime_data``.

    ``runtime_data`` is the KBS object ``{"nonce": ..., "tee-pubkey": <public JWK>}``; its
    ``nonce`` must equal ``nonce`` and REPORTDATA must equal
    :func:`~cleanroom.attestation.report_data_for_runtime_data` of it. The caller must have
    *consumed* ``nonce`` from its :class:`NonceStore` (single use, expiry) before calling.
    ``trusted_roots`` are the roots for simulated evidence (the simulation root CA). Real
    evidence is verified by :func:`cleanroom.attestation.hardware.verify_hardware_evidence`
    against its pinned AMD/Intel roots: SEV-SNP needs ``Evidence.aux`` (the certificate
    table) and, for a VLEK, ``amd_cert_chain``; SGX/TDX take DCAP ``collateral`` (without
    it there is no TCB status, which the policy refuses unless ``allow_unknown_tcb``).

    Raises :class:`EvidenceError` (malformed, bad signature or chain) or
    :class:`PolicyViolation` naming the failed rule.
    """
    if not isinstance(runtime_data, Mapping):
        raise EvidenceError("runtime data must be a JSON object")
    bound_nonce = runtime_data.get("nonce")
    if not (
        isinstance(nonce, str)
        and isinstance(bound_nonce, str)
        and hmac.compare_digest(bound_nonce.encode(), nonce.encode())
    ):
        raise PolicyViolation("nonce", "the runtime data does not carry the verifier's nonce")
    tee_pubkey = check_public_jwk(runtime_data.get("tee-pubkey"))
    return _appraise(
        evidence,
        policy,
        expected_report_data=report_data_for_runtime_data(runtime_data),
        trusted_roots=trusted_roots,
        now=now,
        nonce=nonce,
        tee_pubkey=tee_pubkey,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
    )


def verify_bound(
    evidence: Evidence,
    policy: AttestationPolicy,
    *,
    report_data: bytes,
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    now: dt.datetime | None = None,
) -> VerifiedClaims:
    """Appraise ``evidence`` whose REPORTDATA must equal ``report_data`` (e.g. RA-TLS claims).

    No nonce is involved, so freshness rests on the evidence timestamp: with a
    ``max_evidence_age`` set, evidence without a timestamp is refused (rule
    ``evidence-age``). Otherwise as :func:`verify`.
    """
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_SIZE:
        raise EvidenceError("expected report_data must be exactly 64 bytes")
    return _appraise(
        evidence,
        policy,
        expected_report_data=report_data,
        trusted_roots=trusted_roots,
        now=now,
        nonce=None,
        tee_pubkey=None,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
    )
