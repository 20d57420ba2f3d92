"""The public surface of cleanroom.enclave's training side is pinned."""

from __future__ import annotations

import pytest

import cleanroom.enclave as enclave

TRAINING_SURFACE = {
    "DatasetDigest",
    "JobOutcome",
    "OpenedModel",
    "OutputFile",
    "TrainedJob",
    "VerifiedReceipt",
    "dataset_digest",
    "load_recipient_private_key",
    "open_model",
    "open_sealed",
    "read_envelope",
    "run_contract_job",
    "run_job",
    "seal_output",
    "sign_receipt",
    "verify_receipt",
}


def test_the_training_names_are_public_and_resolve() -> None:
    assert set(enclave.__all__) >= TRAINING_SURFACE
    for name in TRAINING_SURFACE:
        assert getattr(enclave, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        enclave.not_a_name  # noqa: B018
