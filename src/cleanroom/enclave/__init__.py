"""The enclave application: the contract's training job, its sealed outputs and receipt.

Inside the enclave (the ``train`` enclave command, :mod:`cleanroom.enclave.commands`):
:func:`run_job` fetches every party's keys from its broker, decrypts and validates the
data, trains and evaluates the contract's algorithm, seals the outputs the contract names
to their recipients, signs a :mod:`receipt <cleanroom.enclave.receipt>` and writes the
ledger. It returns a :class:`TrainedJob` (what a scoring server needs).

On the operator's side: :func:`run_contract_job` launches the (simulated) enclave for a
contract, streams its progress and returns a :class:`JobOutcome` — public results only.
Recipients open their sealed model with :func:`open_sealed` and check it with
:func:`verify_receipt`. See ``docs/enclave.md``.

Scoring (``docs/scoring.md``): :func:`serve_scoring` keeps a :class:`ScoringModel` in the
enclave and serves :func:`create_scoring_app` — the article's API — over attested TLS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cleanroom.enclave.data import DatasetDigest, dataset_digest
    from cleanroom.enclave.job import OutputFile, TrainedJob, run_job
    from cleanroom.enclave.outputs import JobOutcome, OpenedModel, open_model, run_contract_job
    from cleanroom.enclave.receipt import VerifiedReceipt, sign_receipt, verify_receipt
    from cleanroom.enclave.scoring import create_scoring_app, serve_scoring
    from cleanroom.enclave.scoring_models import ScoringModel
    from cleanroom.enclave.sealing import (
        load_recipient_private_key,
        open_sealed,
        read_envelope,
        seal_output,
    )

# Imported on first use: an enclave process that refuses a contract (not in force) should
# not pay for scikit-learn and onnxruntime first.
_HOME = {
    "DatasetDigest": "data",
    "dataset_digest": "data",
    "OutputFile": "job",
    "TrainedJob": "job",
    "run_job": "job",
    "JobOutcome": "outputs",
    "OpenedModel": "outputs",
    "open_model": "outputs",
    "run_contract_job": "outputs",
    "VerifiedReceipt": "receipt",
    "sign_receipt": "receipt",
    "verify_receipt": "receipt",
    "ScoringModel": "scoring_models",
    "create_scoring_app": "scoring",
    "serve_scoring": "scoring",
    "load_recipient_private_key": "sealing",
    "open_sealed": "sealing",
    "read_envelope": "sealing",
    "seal_output": "sealing",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'cleanroom.enclave' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cleanroom.enclave.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DatasetDigest",
    "JobOutcome",
    "OpenedModel",
    "OutputFile",
    "ScoringModel",
    "TrainedJob",
    "VerifiedReceipt",
    "create_scoring_app",
    "dataset_digest",
    "load_recipient_private_key",
    "open_model",
    "open_sealed",
    "read_envelope",
    "run_contract_job",
    "run_job",
    "seal_output",
    "serve_scoring",
    "sign_receipt",
    "verify_receipt",
]
