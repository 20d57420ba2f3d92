"""Fixtures: party keys, a valid contract document, and stores on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.contract import Contract, SigningKey
from cleanroom.store import Store, open_store

PARTIES = ("alpha", "beta", "gamma")
MEASUREMENT = "ab" * 48


def _recipient_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="session")
def party_keys() -> dict[str, SigningKey]:
    """alpha: Ed25519, beta: P-256, gamma: Ed25519."""
    return {
        "alpha": SigningKey.generate("ed25519"),
        "beta": SigningKey.generate("p256"),
        "gamma": SigningKey.generate("ed25519"),
    }


@pytest.fixture(scope="session")
def base_document(party_keys: dict[str, SigningKey]) -> dict[str, Any]:
    parties = []
    for i, name in enumerate(PARTIES):
        key = party_keys[name].public_key
        parties.append(
            {
                "name": name,
                # beta's key is given as a JWK, the others as PEM.
                "signing_key": key.to_jwk() if name == "beta" else key.to_pem(),
                "broker_url": f"http://127.0.0.1:{8601 + i}",
                "recipient_key": _recipient_pem(),
            }
        )
    return {
        "id": "heart-disease-2026",
        "title": "Pooled heart disease model",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "expires": "2099-01-01T00:00:00Z",
        "parties": parties,
        "datasets": [
            {"party": n, "table": "medical_record", "schema": "medical_record", "min_rows": 50}
            for n in PARTIES
        ],
        "algorithm": {
            "name": "multinomial_logistic_regression",
            "features": ["age", "sex", "cp"],
            "label": "num",
            "hyperparameters": {"l2": 0.1, "max_iter": 200},
            "split": {"train_fraction": 0.8, "seed": 0},
            "metrics": ["micro_accuracy", "macro_accuracy", "log_loss"],
        },
        "enclave": {
            "tee_types": ["sev-snp", "tdx"],
            "reference_measurements": [MEASUREMENT],
            "min_svn": 1,
        },
        "outputs": {
            "model_recipients": ["alpha"],
            "metrics": [{"party": "beta", "metrics": ["micro_accuracy"]}],
            "collaboration_report": list(PARTIES),
        },
        "scoring": {
            "callers": [{"party": "gamma", "quota_per_day": 1000}],
            "probability_decimals": 3,
        },
    }


@pytest.fixture
def document(base_document: dict[str, Any]) -> dict[str, Any]:
    """A fresh deep copy each test may edit."""
    return copy.deepcopy(base_document)


@pytest.fixture
def contract(document: dict[str, Any]) -> Contract:
    return Contract.from_mapping(document)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store: a SQLite file, or a private schema in the test PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as opened:
        yield opened
