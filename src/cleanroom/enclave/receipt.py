"""The signed training receipt, and its offline verification.

A receipt is a JSON object (``receipt.json`` in the outputs directory)::

    {"format": "cleanroom-training-receipt/1",
     "body": {...},                       the facts below
     "algorithm": "ed25519",              of the enclave's signing key
     "signature": <base64url>}            over RFC 8785 {"body_hash": H, "purpose": PURPOSE}

    H = lowercase hex SHA-256 of the RFC 8785 canonical JSON of ``body``
    PURPOSE = "cleanroom.training-receipt/1"

``body`` members: ``contract_hash``, ``job_id``, ``ledger_id``, ``measurement``, ``tee``,
``simulated``, ``datasets`` (per party: ``table``, ``rows``, ``ciphertext_sha256``,
``digest_format``, ``train_rows``, ``test_rows``), ``algorithm`` (``name``,
``featurization``, ``hyperparameters`` resolved, ``seed``, ``split``), ``spec`` (the
feature spec), ``metrics`` (the pooled model on every party's test rows), ``model``
(``sha256`` = the model id, ``bytes``, ``format: "onnx"``, ``onnx_matches``),
``outputs`` (each sealed file: ``kind``, ``party``, ``file``, ``sha256`` of the file),
``enclave_public_key`` (JWK: the key that signs this receipt and the ledger),
``attestation`` (``evidence``: the TEE's evidence, ``runtime-data``: ``{"nonce": job_id,
"tee-pubkey": enclave_public_key}``, whose SHA-384 is the evidence's REPORTDATA),
``issued_at``.

:func:`verify_receipt` needs only the receipt, the contract and the roots the evidence
chains to: it checks the signature, that the attestation evidence binds the signing key
and reports the contract hash as config id and one of the contract's reference
measurements, and that the body names that contract and measurement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509

from cleanroom.attestation import AttestationPolicy, VerifiedClaims, verify
from cleanroom.contract import Contract, SigningKey, VerifyingKey
from cleanroom.contract.keys import b64url_decode, b64url_encode, statement
from cleanroom.errors import (
    AttestationError,
    ContractError,
    EvidenceError,
    SignatureInvalid,
)
from cleanroom.tee import Evidence

#: Format tag of a training receipt.
RECEIPT_FORMAT = "cleanroom-training-receipt/1"
#: Purpose string of the receipt signature.
RECEIPT_PURPOSE = "cleanroom.training-receipt/1"


def reported_config_id(evidence: Evidence) -> str | None:
    """The config id (contract hash, hex) that the platform put in ``evidence``, if readable
    here without verification (the simulated layout); ``None`` for other platforms."""
    if evidence.tee != "simulated":
        return None
    from cleanroom.tee.simulated import decode_simulated_evidence

    config_id = decode_simulated_evidence(evidence.raw).report.config_id
    return "" if config_id is None else config_id.hex()


def body_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 JSON of a receipt body."""
    return hashlib.sha256(rfc8785.dumps(dict(body))).hexdigest()


def sign_receipt(body: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """The signed receipt of ``body`` (module docstring)."""
    message = statement(RECEIPT_PURPOSE, {"body_hash": body_hash(body)})
    return {
        "format": RECEIPT_FORMAT,
        "body": dict(body),
        "algorithm": key.algorithm,
        "signature": b64url_encode(key.sign(message)),
    }


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt whose signature and attestation verified against a contract."""

    body: Mapping[str, Any]
    claims: VerifiedClaims
    public_key: VerifyingKey

    @property
    def model_id(self) -> str:
        """SHA-256 (hex) of the ONNX model bytes."""
        return str(self.body["model"]["sha256"])

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The pooled model's metrics on every party's test rows."""
        metrics: Mapping[str, Any] = self.body["metrics"]
        return metrics


def _member(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise SignatureInvalid(f"the receipt has no {name!r}")
    return body[name]


def verify_receipt(
    receipt: Mapping[str, Any],
    contract: Contract,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    allow_simulation: bool = False,
    collateral: str | bytes | None = None,
    now: dt.datetime | None = None,
) -> VerifiedReceipt:
    """Check a training receipt offline against ``contract``.

    ``trusted_roots`` are the simulation root CA(s) for simulated evidence (hardware
    evidence chains to the vendors' pinned roots). Simulated evidence is refused unless
    ``allow_simulation=True`` *and* the contract allows simulation. Evidence age is not
    checked (a receipt is verified long after the job); the binding of the signing key
    into REPORTDATA is.

    Raises :class:`SignatureInvalid` (malformed receipt or bad signature),
    :class:`EvidenceError` / :class:`PolicyViolation` (attestation does not hold), or
    :class:`ContractError` (the receipt names another contract).
    """
    if not isinstance(receipt, Mapping) or receipt.get("format") != RECEIPT_FORMAT:
        raise SignatureInvalid("not a training receipt")
    body = receipt.get("body")
    signature = receipt.get("signature")
    if not isinstance(body, Mapping) or not isinstance(signature, str):
        raise SignatureInvalid("the receipt is malformed")
    jwk = _member(body, "enclave_public_key")
    try:
        key = VerifyingKey.from_jwk(jwk)
        raw_signature = b64url_decode(signature)
        message = statement(RECEIPT_PURPOSE, {"body_hash": body_hash(body)})
    except (ContractError, ValueError, TypeError, rfc8785.CanonicalizationError):
        raise SignatureInvalid("the receipt is malformed") from None
    key.verify(raw_signature, message)
    if not hmac.compare_digest(
        str(_member(body, "contract_hash")).encode(), contract.hash.encode()
    ):
        raise ContractError("the receipt is for another contract")
    attestation = _member(body, "attestation")
    if not isinstance(attestation, Mapping):
        raise SignatureInvalid("the receipt's attestation is malformed")
    runtime = attestation.get("runtime-data")
    if not isinstance(runtime, Mapping) or runtime.get("tee-pubkey") != jwk:
        raise EvidenceError("the receipt's attestation does not bind its signing key")
    nonce = runtime.get("nonce")
    if not isinstance(nonce, str):
        raise EvidenceError("the receipt's attestation carries no nonce")
    evidence = Evidence.from_json(attestation.get("evidence"))
    accepted = contract.enclave
    policy = AttestationPolicy(
        allowed_tees=frozenset(t for t in accepted.tee_types if t != "simulated"),
        allowed_measurements=frozenset(accepted.reference_measurements),
        required_config_id=contract.hash,
        min_svn=accepted.min_svn,
        allow_simulation=bool(allow_simulation and accepted.allow_simulation),
        max_evidence_age=None,
    )
    claims = verify(
        evidence,
        policy,
        nonce=nonce,
        runtime_data=dict(runtime),
        trusted_roots=trusted_roots,
        collateral=collateral,
        now=now,
    )
    if not hmac.compare_digest(
        str(_member(body, "measurement")).encode(), claims.measurement.encode()
    ):
        raise AttestationError("the receipt names another measurement than its evidence")
    if bool(body.get("simulated")) != claims.simulated:
        raise AttestationError("the receipt misstates whether the TEE was simulated")
    return VerifiedReceipt(body=body, claims=claims, public_key=key)


__all__ = [
    "RECEIPT_FORMAT",
    "RECEIPT_PURPOSE",
    "VerifiedReceipt",
    "body_hash",
    "reported_config_id",
    "sign_receipt",
    "verify_receipt",
]
