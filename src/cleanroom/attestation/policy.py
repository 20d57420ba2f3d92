"""The appraisal policy: what evidence a verifier accepts. Deny by default."""

from __future__ import annotations

import datetime as dt
import hashlib
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from cleanroom.errors import ConfigurationError
from cleanroom.tee._base import TEE_TYPES

#: TCB statuses of DCAP collateral that mean "nothing to fix".
DEFAULT_TCB_STATUSES: frozenset[str] = frozenset({"UpToDate"})

#: The rule names a :class:`~cleanroom.errors.PolicyViolation` can carry, in checking order.
RULES: tuple[str, ...] = (
    "nonce",
    "report-data",
    "simulation",
    "tee",
    "debug",
    "measurement",
    "signer",
    "config-id",
    "svn",
    "tcb-status",
    "evidence-age",
)


def _hex_set(values: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise ConfigurationError(f"{what} must be a collection of hex strings, not one string")
    out = set()
    for value in values:
        normal = _hex(value, what)
        out.add(normal)
    return frozenset(out)


def _hex(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) % 2:
        raise ConfigurationError(f"{what} must be hex strings of whole bytes")
    normal = value.lower()
    if not set(normal) <= set(string.hexdigits.lower()):
        raise ConfigurationError(f"{what} must be hex strings")
    return normal


@dataclass(frozen=True, kw_only=True, slots=True)
class AttestationPolicy:
    """Appraisal policy for evidence (RFC 9334). Every field is keyword-only; defaults deny.

    - ``allowed_tees``: TEE types accepted (``sev-snp``, ``tdx``, ``sgx``). Empty: none.
      ``allow_simulation=True`` adds ``simulated``; listing ``simulated`` without it is refused.
    - ``allowed_measurements``: reference values (hex): SNP MEASUREMENT, TDX MRTD, SGX
      MRENCLAVE, simulated bundle measurement. Empty: none.
    - ``allowed_signers``: if non-empty, the signer (SGX MRSIGNER, SNP ID/author key digest)
      must be one of them.
    - ``required_config_id``: if set, the config id (contract hash; SNP HOST_DATA, TDX
      MRCONFIGID) must equal it.
    - ``min_svn``: integer SVN floor (SNP GUEST_SVN, SGX ISVSVN, simulated svn).
      ``min_tee_tcb_svn``: TDX TEE_TCB_SVN floor (hex, compared byte by byte).
    - ``allowed_tcb_statuses``: DCAP TCB statuses accepted; ``allow_unknown_tcb`` accepts
      SGX/TDX evidence verified without collateral (no status).
    - ``allow_debug``: accept debug enclaves. ``allow_simulation``: accept the simulated TEE
      (always debug; the simulation's debug flag is accepted with it). Both INSECURE.
    - ``max_evidence_age``: oldest accepted evidence timestamp (``None``: no limit); evidence
      without a timestamp is fresh only through a nonce. ``clock_skew``: tolerance for
      timestamps from the future and the age check.
    """

    allowed_tees: frozenset[str] = field(default_factory=frozenset)
    allowed_measurements: frozenset[str] = field(default_factory=frozenset)
    allowed_signers: frozenset[str] = field(default_factory=frozenset)
    required_config_id: str | None = None
    min_svn: int = 0
    min_tee_tcb_svn: str | None = None
    allowed_tcb_statuses: frozenset[str] = DEFAULT_TCB_STATUSES
    allow_unknown_tcb: bool = False
    allow_debug: bool = False
    allow_simulation: bool = False
    max_evidence_age: dt.timedelta | None = dt.timedelta(minutes=5)
    clock_skew: dt.timedelta = dt.timedelta(seconds=30)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.allowed_tees, str):
            raise ConfigurationError("allowed_tees must be a collection of TEE names")
        tees = frozenset(self.allowed_tees)
        unknown = tees - TEE_TYPES
        if unknown:
            raise ConfigurationError(f"unknown TEE types in allowed_tees: {sorted(unknown)}")
        for flag in ("allow_debug", "allow_simulation", "allow_unknown_tcb"):
            if type(getattr(self, flag)) is not bool:
                raise ConfigurationError(f"{flag} must be a bool")
        if "simulated" in tees and not self.allow_simulation:
            raise ConfigurationError("'simulated' in allowed_tees needs allow_simulation=True")
        if self.allow_simulation:
            tees = tees | {"simulated"}
        put("allowed_tees", tees)
        put("allowed_measurements", _hex_set(self.allowed_measurements, "allowed_measurements"))
        put("allowed_signers", _hex_set(self.allowed_signers, "allowed_signers"))
        if self.required_config_id is not None:
            put("required_config_id", _hex(self.required_config_id, "required_config_id"))
        if self.min_tee_tcb_svn is not None:
            put("min_tee_tcb_svn", _hex(self.min_tee_tcb_svn, "min_tee_tcb_svn"))
        if isinstance(self.allowed_tcb_statuses, str):
            raise ConfigurationError("allowed_tcb_statuses must be a collection of strings")
        put("allowed_tcb_statuses", frozenset(self.allowed_tcb_statuses))
        if type(self.min_svn) is not int or self.min_svn < 0:
            raise ConfigurationError("min_svn must be a non-negative integer")
        if self.max_evidence_age is not None and self.max_evidence_age <= dt.timedelta(0):
            raise ConfigurationError("max_evidence_age must be positive (or None)")
        if not dt.timedelta(0) <= self.clock_skew <= dt.timedelta(minutes=10):
            raise ConfigurationError("clock_skew must be between 0 and 10 minutes")


def policy_document(policy: AttestationPolicy) -> dict[str, Any]:
    """``policy`` as plain JSON values (sorted lists, seconds)."""
    age = policy.max_evidence_age
    return {
        "allowed-tees": sorted(policy.allowed_tees),
        "allowed-measurements": sorted(policy.allowed_measurements),
        "allowed-signers": sorted(policy.allowed_signers),
        "required-config-id": policy.required_config_id,
        "min-svn": policy.min_svn,
        "min-tee-tcb-svn": policy.min_tee_tcb_svn,
        "allowed-tcb-statuses": sorted(policy.allowed_tcb_statuses),
        "allow-unknown-tcb": policy.allow_unknown_tcb,
        "allow-debug": policy.allow_debug,
        "allow-simulation": policy.allow_simulation,
        "max-evidence-age": None if age is None else age.total_seconds(),
        "clock-skew": policy.clock_skew.total_seconds(),
    }


def policy_id(policy: AttestationPolicy) -> str:
    """``cleanroom:policy:<sha256 of the RFC 8785 JSON of policy_document>`` (EAR policy id)."""
    digest = hashlib.sha256(rfc8785.dumps(policy_document(policy))).hexdigest()
    return f"cleanroom:policy:{digest}"
