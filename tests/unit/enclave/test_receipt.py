"""Training receipts: signed by the enclave key that the attestation evidence binds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cleanroom.attestation import report_data_for_runtime_data, runtime_data_for
from cleanroom.contract import Contract, SigningKey
from cleanroom.enclave import sign_receipt, verify_receipt
from cleanroom.errors import (
    AttestationError,
    ContractError,
    EvidenceError,
    PolicyViolation,
    SignatureInvalid,
)
from cleanroom.tee import SimulatedLauncher

MEASUREMENT = "5a" * 48


def _contract(measurement: str = MEASUREMENT, contract_id: str = "receipt-test") -> Contract:
    party_key = SigningKey.generate()
    recipient = {
        "kty": "EC",
        "crv": "P-256",
        "x": "Xis2-DDLijlpGf77KMKbDM8Gs1Ap8zDIam0Do-M9ehE",
        "y": "LgWipYhfP6TtY4SE66urvizmVVY_oo_M8Xua4_ly3ls",
    }
    return Contract.from_mapping(
        {
            "id": contract_id,
            "title": "Receipt test",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": [
                {
                    "name": "hospital_a",
                    "signing_key": party_key.public_key.to_pem(),
                    "broker_url": "http://127.0.0.1:8701",
                    "recipient_key": recipient,
                }
            ],
            "datasets": [
                {
                    "party": "hospital_a",
                    "table": "MedicalRecords",
                    "schema": "medical_record",
                    "min_rows": 1,
                }
            ],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": ["age"],
                "label": "risk",
                "split": {"train_fraction": 0.8},
                "metrics": ["micro_accuracy"],
            },
            "enclave": {
                "tee_types": ["simulated"],
                "allow_simulation": True,
                "reference_measurements": [measurement],
            },
        }
    )


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True, workdir=tmp_path_factory.mktemp("sim"))


def _receipt(
    launcher: SimulatedLauncher,
    contract: Contract,
    *,
    key: SigningKey | None = None,
    bound: SigningKey | None = None,
    measurement: str = MEASUREMENT,
    body_measurement: str | None = None,
) -> dict[str, Any]:
    key = key or SigningKey.generate()
    runtime = runtime_data_for("job-1", (bound or key).public_key.to_jwk())
    evidence = launcher.sign_report(
        measurement=measurement,
        config_id=bytes.fromhex(contract.hash),
        report_data=report_data_for_runtime_data(runtime),
    )
    body = {
        "contract_hash": contract.hash,
        "job_id": "job-1",
        "measurement": body_measurement or measurement,
        "simulated": True,
        "metrics": {"micro_accuracy": 0.9, "rows": 60},
        "model": {"sha256": "00" * 32},
        "enclave_public_key": key.public_key.to_jwk(),
        "attestation": {"evidence": evidence.to_json(), "runtime-data": runtime},
    }
    return sign_receipt(body, key)


def test_a_receipt_verifies_offline(launcher: SimulatedLauncher) -> None:
    contract = _contract()
    verified = verify_receipt(
        _receipt(launcher, contract),
        contract,
        trusted_roots=[launcher.root_certificate],
        allow_simulation=True,
    )
    assert verified.claims.simulated
    assert verified.claims.config_id == contract.hash
    assert verified.metrics["micro_accuracy"] == 0.9
    assert verified.model_id == "00" * 32


def test_an_edited_body_fails(launcher: SimulatedLauncher) -> None:
    contract = _contract()
    receipt = _receipt(launcher, contract)
    edited = copy.deepcopy(receipt)
    edited["body"]["metrics"]["micro_accuracy"] = 0.99
    with pytest.raises(SignatureInvalid):
        verify_receipt(
            edited, contract, trusted_roots=[launcher.root_certificate], allow_simulation=True
        )
    with pytest.raises(SignatureInvalid):
        verify_receipt({**receipt, "format": "x"}, contract)


def test_simulation_needs_to_be_allowed(launcher: SimulatedLauncher) -> None:
    contract = _contract()
    with pytest.raises(PolicyViolation) as refused:
        verify_receipt(
            _receipt(launcher, contract), contract, trusted_roots=[launcher.root_certificate]
        )
    assert refused.value.rule == "simulation"
    with pytest.raises(EvidenceError):  # no trusted root: the chain does not verify
        verify_receipt(_receipt(launcher, contract), contract, allow_simulation=True)


def test_another_contract_or_measurement_fails(launcher: SimulatedLauncher, tmp_path: Path) -> None:
    contract = _contract()
    roots = [launcher.root_certificate]
    with pytest.raises(ContractError, match="another contract"):
        verify_receipt(
            _receipt(launcher, contract),
            _contract(contract_id="other"),
            trusted_roots=roots,
            allow_simulation=True,
        )
    unapproved = _receipt(launcher, contract, measurement="5b" * 48)
    with pytest.raises(PolicyViolation) as refused:
        verify_receipt(unapproved, contract, trusted_roots=roots, allow_simulation=True)
    assert refused.value.rule == "measurement"
    misstated = _receipt(launcher, contract, body_measurement="5b" * 48)
    with pytest.raises(AttestationError, match="another measurement"):
        verify_receipt(misstated, contract, trusted_roots=roots, allow_simulation=True)


def test_the_evidence_must_bind_the_signing_key(launcher: SimulatedLauncher) -> None:
    contract = _contract()
    receipt = _receipt(launcher, contract, bound=SigningKey.generate())
    with pytest.raises(EvidenceError, match="signing key"):
        verify_receipt(
            receipt, contract, trusted_roots=[launcher.root_certificate], allow_simulation=True
        )
