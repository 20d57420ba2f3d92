"""The collaboration contract: what runs on the pooled data, and who agreed to it.

A :class:`Contract` is a JSON document (schema: ``docs/contract.schema.json``) naming the
parties, datasets, algorithm, accepted enclave, outputs and scoring policy. Its identity is
:func:`contract_hash` — SHA-256 of its RFC 8785 canonical JSON. Each party signs that hash
with its Ed25519 or ECDSA P-256 key (:class:`SigningKey`); the :class:`ContractRegistry`
(kept in the store) says whether a hash is in force: signed by every party, revoked by none.
See ``docs/contract.md``.
"""

from cleanroom.contract.keys import (
    SIGNATURE_ALGORITHMS,
    SignatureAlgorithm,
    SigningKey,
    VerifyingKey,
)
from cleanroom.contract.model import (
    ALGORITHMS,
    METRICS,
    TEE_TYPES,
    Algorithm,
    Contract,
    Dataset,
    Enclave,
    Jwk,
    MetricGrant,
    Outputs,
    Party,
    Scoring,
    ScoringGrant,
    Split,
    contract_hash,
    contract_json_schema,
)
from cleanroom.contract.registry import ContractInfo, ContractRegistry, ContractStatus
from cleanroom.contract.signatures import (
    Approval,
    Revocation,
    sign_approval,
    sign_revocation,
    verify_approval,
    verify_revocation,
)

__all__ = [
    "ALGORITHMS",
    "METRICS",
    "SIGNATURE_ALGORITHMS",
    "TEE_TYPES",
    "Algorithm",
    "Approval",
    "Contract",
    "ContractInfo",
    "ContractRegistry",
    "ContractStatus",
    "Dataset",
    "Enclave",
    "Jwk",
    "MetricGrant",
    "Outputs",
    "Party",
    "Revocation",
    "Scoring",
    "ScoringGrant",
    "SignatureAlgorithm",
    "SigningKey",
    "Split",
    "VerifyingKey",
    "contract_hash",
    "contract_json_schema",
    "sign_approval",
    "sign_revocation",
    "verify_approval",
    "verify_revocation",
]
