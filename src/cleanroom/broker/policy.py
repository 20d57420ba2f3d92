"""The release policy of one party's broker: when may this party's key go to an enclave?

Checked in this order; the first rule that fails refuses the request with a
:class:`~cleanroom.errors.PolicyViolation` naming it (see :data:`RELEASE_RULES`):

1. at attest time the evidence verifies (:func:`cleanroom.attestation.verify`: signature,
   this session's unused nonce, REPORTDATA binding of ``{nonce, tee-pubkey}``, evidence
   age) — or an EAR token from the party's verifier does;
2. ``config-id``: the TEE reports a contract hash; ``contract``: the store knows it;
   ``party``: it names this party; ``in-force``: every party signed it, none revoked,
   not expired, and this party's own veto list (a file the operator cannot edit, see
   :func:`add_veto`) does not name it — all re-read on **every** request, so a
   revocation takes effect on the next one;
3. ``tee``, ``simulation``, ``debug``: the TEE type is one the contract accepts; simulated
   or debug evidence only when the contract allows simulation **and** this broker runs with
   ``insecure_simulation`` (each acceptance warns);
4. ``measurement``: one of the contract's reference measurements; ``svn``: at least its
   ``min_svn``;
5. ``resource``: ``<this party>/cek/<name>`` where ``name`` is the column encryption key of
   an encrypted column of a dataset this party contributes under the contract;
6. ``cmk``: a column master key wrapping that CEK is enclave-enabled, lives in this party's
   key store and its metadata signature verifies; ``cek``: the wrapped CEK verifies and
   unwraps.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cleanroom.attestation import AttestationPolicy
from cleanroom.contract import Contract, ContractInfo, ContractStatus
from cleanroom.crypto.keys import ColumnEncryptionKey
from cleanroom.crypto.wrapping import unwrap_cek, verify_cmk_metadata
from cleanroom.errors import (
    ConfigurationError,
    ContractError,
    KeyStoreError,
    KeyWrapError,
    PolicyViolation,
    StorageError,
)
from cleanroom.keystores import KeyStore
from cleanroom.store import Store

from .sessions import AttestedEnclave

_log = logging.getLogger("cleanroom.broker")

#: Resource type of a column encryption key.
CEK_TYPE = "cek"

#: Rule names a refusal can carry, in checking order.
RELEASE_RULES: tuple[str, ...] = (
    "session",
    "nonce",
    "token",
    "evidence",
    "ear-status",
    "config-id",
    "contract",
    "party",
    "in-force",
    "tee",
    "simulation",
    "debug",
    "measurement",
    "svn",
    "resource",
    "cmk",
    "cek",
)

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
INSECURE_WARNING = "INSECURE: broker for %s accepted simulated/debug TEE evidence (%s)"


class ContractAuthority(Protocol):
    """Where the broker reads contracts and their approval state (a
    :class:`~cleanroom.contract.ContractRegistry`).

    Guarantees expected: :meth:`status` re-verifies every stored approval and revocation
    on each call; :meth:`contract` returns a document that hashes to its key.
    """

    def contract(self, contract_hash: str) -> Contract:
        """The contract with this hash (:class:`ContractError` if unknown)."""
        ...

    def status(self, contract_hash: str) -> ContractStatus:
        """Who signed, who is missing, who revoked; whether it is in force."""
        ...

    def list_contracts(self) -> list[ContractInfo]:
        """Every stored contract."""
        ...


@dataclass(frozen=True, slots=True)
class ResourcePath:
    """``<repository>/<type>/<tag>`` of a KBS resource; for keys ``<party>/cek/<cek name>``."""

    repository: str
    type: str
    tag: str

    @classmethod
    def parse(cls, repository: str, type_: str, tag: str) -> ResourcePath:
        """Validate the three segments (letters, digits, ``_ . -``; at most 128 each)."""
        for segment in (repository, type_, tag):
            if not isinstance(segment, str) or not _SEGMENT.match(segment):
                raise PolicyViolation("resource", "malformed resource path")
        return cls(repository, type_, tag)

    def __str__(self) -> str:
        return f"{self.repository}/{self.type}/{self.tag}"


@dataclass(frozen=True, slots=True)
class Authorization:
    """A release the policy allowed: which contract, which CEK, for which enclave."""

    contract_hash: str
    cek_name: str
    resource: ResourcePath
    enclave: AttestedEnclave


def read_vetoes(path: Path) -> frozenset[str]:
    """The contract hashes in a veto file (one per line, ``#`` comments); none if absent.

    A file that cannot be read or holds anything but hashes raises
    :class:`PolicyViolation` (rule ``in-force``): the broker then refuses every release.
    """
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError):
        raise PolicyViolation("in-force", "the party's veto list cannot be read") from None
    hashes = set()
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not _HASH.match(entry):
            raise PolicyViolation("in-force", "the party's veto list is malformed")
        hashes.add(entry)
    return frozenset(hashes)


def add_veto(path: Path, contract_hash: str) -> None:
    """Append ``contract_hash`` to the veto file ``path`` (created 0600); idempotent."""
    if not isinstance(contract_hash, str) or not _HASH.match(contract_hash):
        raise ConfigurationError("a contract hash is 64 lowercase hex digits")
    if contract_hash in read_vetoes(path):
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{contract_hash}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _contains(values: Sequence[str], wanted: str) -> bool:
    found = False
    for value in values:
        found |= hmac.compare_digest(value.encode(), wanted.encode())
    return found


class ReleasePolicy:
    """The release rules of one party (module docstring), over its store and key store.

    ``insecure_simulation`` lets simulated (always debug) evidence through when the
    contract also allows simulation; every such acceptance logs a warning.
    """

    def __init__(
        self,
        *,
        party: str,
        store: Store,
        contracts: ContractAuthority,
        key_store: KeyStore,
        insecure_simulation: bool = False,
        max_evidence_age: dt.timedelta = dt.timedelta(minutes=5),
        veto_file: Path | None = None,
    ) -> None:
        if type(insecure_simulation) is not bool:
            raise TypeError("insecure_simulation must be a bool")
        self.party = party
        self._store = store
        self._contracts = contracts
        self._key_store = key_store
        self.insecure_simulation = insecure_simulation
        self._max_evidence_age = max_evidence_age
        self._veto_file = veto_file

    def __repr__(self) -> str:
        return f"ReleasePolicy(party={self.party!r}, insecure={self.insecure_simulation})"

    # -- attest time ----------------------------------------------------------------------

    def _party_contracts(self) -> list[Contract]:
        found = []
        for info in self._contracts.list_contracts():
            try:
                contract = self._contracts.contract(info.contract_hash)
            except ContractError:
                continue  # a tampered row: never a source of reference values
            if self.party in contract.party_names:
                found.append(contract)
        return found

    def appraisal_policy(self) -> AttestationPolicy:
        """The evidence policy at attest time: any TEE type and measurement that a contract
        naming this party accepts. The per-contract rules run in :meth:`check_contract`."""
        tees: set[str] = set()
        measurements: set[str] = set()
        for contract in self._party_contracts():
            tees.update(t for t in contract.enclave.tee_types if t != "simulated")
            measurements.update(contract.enclave.reference_measurements)
        return AttestationPolicy(
            allowed_tees=frozenset(tees),
            allowed_measurements=frozenset(measurements),
            allow_simulation=self.insecure_simulation,
            max_evidence_age=self._max_evidence_age,
        )

    # -- every request --------------------------------------------------------------------

    def check_contract(self, enclave: AttestedEnclave) -> Contract:
        """Rules 2-4 for ``enclave``; the contract in force it runs under."""
        config_id = enclave.config_id
        if config_id is None or not _HASH.match(config_id):
            raise PolicyViolation("config-id", "the TEE reports no contract hash as config id")
        try:
            contract = self._contracts.contract(config_id)
            status = self._contracts.status(config_id)
        except ContractError:
            raise PolicyViolation("contract", "the reported contract is unknown") from None
        except StorageError:
            raise PolicyViolation("contract", "the contract registry cannot be read") from None
        if self.party not in contract.party_names:
            raise PolicyViolation("party", f"the contract does not name party {self.party}")
        if not status.in_force or self.party not in status.signed_by:
            raise PolicyViolation("in-force", status.explain())
        if self._veto_file is not None and config_id in read_vetoes(self._veto_file):
            raise PolicyViolation("in-force", f"party {self.party} vetoed the contract")
        accepted = contract.enclave
        if enclave.tee not in accepted.tee_types:
            raise PolicyViolation("tee", f"the contract does not accept TEE type {enclave.tee}")
        insecure = enclave.simulated or enclave.debug
        if enclave.simulated and not (accepted.allow_simulation and self.insecure_simulation):
            raise PolicyViolation(
                "simulation", "simulated evidence needs the contract and the broker to allow it"
            )
        if enclave.debug and not (enclave.simulated and self.insecure_simulation):
            raise PolicyViolation("debug", "the enclave runs in debug mode")
        if not _contains(accepted.reference_measurements, enclave.measurement):
            raise PolicyViolation(
                "measurement", "the measurement is not a reference measurement of the contract"
            )
        if accepted.min_svn and not (
            isinstance(enclave.svn, int) and enclave.svn >= accepted.min_svn
        ):
            raise PolicyViolation("svn", "the security version is below the contract's minimum")
        if insecure:
            _log.warning(INSECURE_WARNING, self.party, enclave.measurement[:16])
        return contract

    def authorize(self, enclave: AttestedEnclave, resource: ResourcePath) -> Authorization:
        """Rules 2-5: may ``enclave`` have ``resource``?"""
        contract = self.check_contract(enclave)
        if resource.repository != self.party:
            raise PolicyViolation("resource", "the resource belongs to another party")
        if resource.type != CEK_TYPE:
            raise PolicyViolation("resource", f"this broker serves only type {CEK_TYPE!r}")
        if resource.tag not in self.contract_ceks(contract):
            raise PolicyViolation(
                "resource", "the key is not used by a dataset of this party in the contract"
            )
        return Authorization(contract.hash, resource.tag, resource, enclave)

    def contract_ceks(self, contract: Contract) -> frozenset[str]:
        """CEK names of the encrypted columns of this party's datasets in ``contract``."""
        names: set[str] = set()
        for dataset in contract.datasets:
            if dataset.party != self.party:
                continue
            try:
                info = self._store.dataset(self.party, dataset.table)
                columns = self._store.encrypted_columns(info)
            except StorageError:
                continue  # not loaded (yet): nothing of it to release
            names.update(c.column_encryption_key_name for c in columns)
        return frozenset(names)

    def release(self, authorization: Authorization) -> ColumnEncryptionKey:
        """Rule 6, then unwrap the CEK with this party's key store."""
        if not isinstance(authorization, Authorization):
            raise TypeError("release needs an Authorization from authorize()")
        try:
            info = self._store.column_encryption_key(authorization.cek_name)
        except StorageError:
            raise PolicyViolation("cek", "the column encryption key is not in the store") from None
        eligible = []
        for value in info.values:
            try:
                cmk = self._store.column_master_key(value.column_master_key_name)
            except StorageError:
                continue
            if not cmk.allow_enclave_computations or cmk.signature is None:
                continue
            if cmk.key_store_provider_name.upper() != self._key_store.provider_name.upper():
                continue
            try:
                verify_cmk_metadata(
                    self._key_store, cmk.key_path, cmk.signature, allow_enclave_computations=True
                )
            except (KeyWrapError, KeyStoreError):
                continue
            eligible.append((value.encrypted_value, cmk.key_path))
        if not eligible:
            raise PolicyViolation(
                "cmk",
                "no column master key of this CEK is enclave-enabled with a valid metadata "
                "signature in this party's key store",
            )
        for blob, key_path in eligible:
            try:
                return unwrap_cek(blob, self._key_store, key_path)
            except KeyWrapError:
                continue
        raise PolicyViolation("cek", "the wrapped column encryption key does not unwrap")


__all__ = [
    "CEK_TYPE",
    "RELEASE_RULES",
    "Authorization",
    "ContractAuthority",
    "ReleasePolicy",
    "ResourcePath",
    "add_veto",
    "read_vetoes",
]
