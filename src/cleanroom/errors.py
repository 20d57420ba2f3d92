"""The one exception tree of cleanroom.

Every error that cleanroom raises on purpose is a :class:`CleanroomError`. Where a
built-in exception fits too, the class also derives from it, so ``except ValueError``
keeps working for callers who do not know cleanroom::

    CleanroomError
    ├── ConfigurationError (ValueError)        contradictory or missing settings
    ├── CryptoError
    │   ├── DecryptionError (ValueError)       a cell or sealed blob did not decrypt; never says why
    │   ├── KeyWrapError (ValueError)          a wrapped CEK is malformed or its signature fails
    │   └── NormalizationError (ValueError)    a value does not fit its SQL type
    ├── KeyStoreError                          a key store cannot find, create or use a key
    ├── StorageError                           the store refused or failed an operation
    │   ├── SchemaError (ValueError)           a dataset schema or a row does not validate
    │   └── QueryError (ValueError)            a SQL statement is unsupported or was refused
    ├── AttestationError
    │   ├── EvidenceError (ValueError)         evidence is malformed or its signature fails
    │   └── PolicyViolation                    evidence is genuine but breaks a policy rule
    ├── ContractError (ValueError)
    │   ├── ConsentMissing                     a party has not signed (or has revoked)
    │   └── SignatureInvalid                   a contract signature does not verify
    ├── BrokerError                            a key broker refused or failed a request
    ├── TrainingError                          the enclave job could not train or evaluate
    ├── ScoringError                           a scoring request was refused
    └── LedgerError                            the audit ledger does not verify

Messages never carry a key, a secret or a plaintext value. ``EXIT_CODES`` maps each
class to the exit status of the ``cleanroom`` command (see ``docs/cli.md``).
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Root of every error cleanroom raises on purpose."""


class ConfigurationError(CleanroomError, ValueError):
    """Settings are missing, malformed or contradict each other."""


class CryptoError(CleanroomError):
    """A cryptographic operation failed."""


class DecryptionError(CryptoError, ValueError):
    """A ciphertext did not decrypt.

    The message is always the same: it never tells a bad tag from bad padding, a
    truncated cell from a wrong key.
    """

    MESSAGE = "decryption failed: the ciphertext is malformed, tampered or under another key"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.MESSAGE)


class KeyWrapError(CryptoError, ValueError):
    """A wrapped column encryption key is malformed, or its signature does not verify."""


class NormalizationError(CryptoError, ValueError):
    """A value cannot be normalized to (or read back from) its SQL type."""


class KeyStoreError(CleanroomError):
    """A key store cannot find, create or use a key."""


class StorageError(CleanroomError):
    """The store refused or failed an operation."""


class SchemaError(StorageError, ValueError):
    """A dataset schema, or a row checked against it, does not validate."""


class QueryError(StorageError, ValueError):
    """A SQL statement uses an unsupported construct, or the query engine refused it."""


class AttestationError(CleanroomError):
    """Evidence could not be obtained, parsed or appraised."""


class EvidenceError(AttestationError, ValueError):
    """Evidence is malformed, or its signature chain does not verify."""


class PolicyViolation(AttestationError):
    """Evidence is genuine but breaks a rule of the appraisal policy.

    ``rule`` names the rule that failed, e.g. ``"measurement"`` or ``"debug"``.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


class ContractError(CleanroomError, ValueError):
    """A contract is malformed, or an operation on it is not allowed."""


class ConsentMissing(ContractError):
    """A party named in the contract has not signed it, or has revoked its signature."""


class SignatureInvalid(ContractError):
    """A signature over a contract does not verify."""


class BrokerError(CleanroomError):
    """A key broker refused or failed a request."""


class TrainingError(CleanroomError):
    """The enclave job could not train or evaluate."""


class ScoringError(CleanroomError):
    """A scoring request was refused."""


class LedgerError(CleanroomError):
    """The audit ledger does not verify."""


#: Exit status of the ``cleanroom`` command per error class (most specific first).
EXIT_CODES: tuple[tuple[type[CleanroomError], int], ...] = (
    (ConfigurationError, 2),
    (DecryptionError, 10),
    (KeyWrapError, 11),
    (NormalizationError, 12),
    (CryptoError, 13),
    (KeyStoreError, 14),
    (SchemaError, 21),
    (StorageError, 20),
    (PolicyViolation, 31),
    (AttestationError, 30),
    (ConsentMissing, 41),
    (SignatureInvalid, 42),
    (ContractError, 40),
    (BrokerError, 50),
    (TrainingError, 60),
    (ScoringError, 70),
    (LedgerError, 80),
    (CleanroomError, 1),
)


def exit_code_for(error: CleanroomError) -> int:
    """The ``cleanroom`` exit status for ``error``."""
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return 1


__all__ = [
    "EXIT_CODES",
    "AttestationError",
    "BrokerError",
    "CleanroomError",
    "ConfigurationError",
    "ConsentMissing",
    "ContractError",
    "CryptoError",
    "DecryptionError",
    "EvidenceError",
    "KeyStoreError",
    "KeyWrapError",
    "LedgerError",
    "NormalizationError",
    "PolicyViolation",
    "QueryError",
    "SchemaError",
    "ScoringError",
    "SignatureInvalid",
    "StorageError",
    "TrainingError",
    "exit_code_for",
]
