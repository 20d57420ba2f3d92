"""The contract registry: contracts, approvals and revocations, kept in the store.

Tables (own :data:`metadata`, created by :func:`create_all`; nothing in them is secret):

=========================  ===============================================================
``contracts``              ``contract_hash`` (PK) → canonical document, id, version
``contract_signatures``    one approval per (contract_hash, party): base64url signature
``contract_revocations``   one revocation per (contract_hash, party): signed time + signature
=========================  ===============================================================

The database is run by the operator, who is not trusted: every read is checked again.
The stored document must hash to its key, and :meth:`ContractRegistry.status` re-verifies
every stored signature and revocation; a record that does not verify is reported in
:attr:`ContractStatus.invalid` and keeps the contract out of force (fail closed). What the
registry cannot prevent is the operator *deleting* a revocation row; a party that revoked
should also tell its own broker (which then refuses regardless), see ``docs/contract.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cleanroom.contract.keys import SigningKey, b64url_encode
from cleanroom.contract.model import Contract
from cleanroom.contract.signatures import (
    Approval,
    Revocation,
    check_contract_hash,
    sign_approval,
    verify_approval,
    verify_revocation,
)
from cleanroom.errors import ConsentMissing, ContractError, SignatureInvalid
from cleanroom.store import Store, utc_now

metadata = sa.MetaData()

_NAME = 48

contracts = sa.Table(
    "contracts",
    metadata,
    sa.Column("contract_hash", sa.String(64), primary_key=True),
    sa.Column("contract_id", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("document", sa.Text(), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
)

contract_signatures = sa.Table(
    "contract_signatures",
    metadata,
    sa.Column(
        "contract_hash",
        sa.String(64),
        sa.ForeignKey("contracts.contract_hash", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("party", sa.String(_NAME), primary_key=True),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

contract_revocations = sa.Table(
    "contract_revocations",
    metadata,
    sa.Column(
        "contract_hash",
        sa.String(64),
        sa.ForeignKey("contracts.contract_hash", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("party", sa.String(_NAME), primary_key=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


def create_all(store: Store) -> None:
    """Create the registry tables in ``store`` if they do not exist (idempotent)."""
    with store.write("creating the contract tables") as conn:
        metadata.create_all(conn)


@dataclass(frozen=True, slots=True)
class ContractStatus:
    """Who has signed a contract hash, who is missing, who revoked, and whether it is in force.

    ``invalid`` lists parties whose stored signature or revocation did not verify (a
    tampered store); ``expired`` is true at or after the contract's ``expires``.
    """

    contract_hash: str
    contract_id: str
    version: int
    parties: tuple[str, ...]
    signed_by: tuple[str, ...]
    missing: tuple[str, ...]
    revoked_by: tuple[str, ...]
    invalid: tuple[str, ...]
    expired: bool

    @property
    def in_force(self) -> bool:
        """Every party signed, none revoked, nothing tampered, not expired."""
        return not (self.missing or self.revoked_by or self.invalid or self.expired)

    def explain(self) -> str:
        """One line saying why the contract is (not) in force; names only, no key material."""
        if self.in_force:
            return f"contract {self.contract_hash[:16]}… is in force (signed by all parties)"
        reasons = []
        if self.revoked_by:
            reasons.append(f"revoked by {', '.join(self.revoked_by)}")
        if self.missing:
            reasons.append(f"not signed by {', '.join(self.missing)}")
        if self.invalid:
            reasons.append(f"stored records that do not verify for {', '.join(self.invalid)}")
        if self.expired:
            reasons.append("expired")
        return f"contract {self.contract_hash[:16]}… is not in force: {'; '.join(reasons)}"


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """A row of :meth:`ContractRegistry.list`."""

    contract_hash: str
    contract_id: str
    version: int
    submitted_at: dt.datetime


class ContractRegistry:
    """Contracts and their approvals and revocations, in a :class:`~cleanroom.store.Store`.

    Guarantees: a stored approval verified against the party key the contract names, for
    this exact hash; a revocation is signed by the revoking party and permanent (no
    approval is accepted after it, and it is never removed by this API); a contract edited
    after signing is a different hash with no signatures. Does not guarantee that a
    revocation row survives an operator who deletes it (see the module docstring).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        create_all(store)

    def __repr__(self) -> str:
        return f"ContractRegistry({self._store!r})"

    # -- contracts ------------------------------------------------------------------------

    def submit(self, contract: Contract) -> str:
        """Store ``contract`` (idempotent) and return its hash."""
        h = contract.hash
        document = contract.canonical_bytes().decode("utf-8")
        with self._store.write("storing the contract") as conn:
            _insert_if_absent(
                conn,
                contracts,
                contract_hash=h,
                contract_id=contract.id,
                version=contract.version,
                document=document,
                submitted_at=utc_now(),
            )
        return h

    def contract(self, contract_hash: str) -> Contract:
        """The stored contract, re-validated and re-hashed; :class:`ContractError` if unknown."""
        with self._store.read("reading the contract") as conn:
            return self._load(conn, check_contract_hash(contract_hash))

    def list_contracts(self) -> list[ContractInfo]:
        """Every stored contract, oldest first."""
        query = sa.select(
            contracts.c.contract_hash,
            contracts.c.contract_id,
            contracts.c.version,
            contracts.c.submitted_at,
        ).order_by(contracts.c.submitted_at, contracts.c.contract_hash)
        with self._store.read("listing contracts") as conn:
            return [ContractInfo(*row) for row in conn.execute(query)]

    # -- approvals and revocations --------------------------------------------------------

    def sign(self, contract_hash: str, party: str, private_key: SigningKey) -> Approval:
        """Sign ``contract_hash`` as ``party`` with ``private_key`` and store the approval.

        Refuses (``ContractError``) a key that is not the one the contract names for
        ``party``, and an unknown party.
        """
        contract = self.contract(contract_hash)
        approval = sign_approval(contract, party, private_key)
        self._store_approval(contract, approval)
        return approval

    def add_signature(self, contract_hash: str, party: str, signature: str | bytes) -> Approval:
        """Verify a party's signature (base64url text or raw bytes) and store it.

        :class:`SignatureInvalid` if it does not verify against that party's key for this
        hash; :class:`ConsentMissing` if the contract was revoked; idempotent otherwise.
        """
        text = b64url_encode(signature) if isinstance(signature, bytes) else signature
        contract = self.contract(contract_hash)
        approval = Approval(contract.hash, party, text)
        self._store_approval(contract, approval)
        return approval

    def _store_approval(self, contract: Contract, approval: Approval) -> None:
        contract.party(approval.party)  # unknown party → ContractError
        verify_approval(contract, approval)
        h = contract.hash
        with self._store.write("storing the approval") as conn:
            revoked = self._revocations(conn, h)
            if revoked:
                raise ConsentMissing(
                    f"contract {h[:16]}… was revoked by {', '.join(sorted(revoked))}; "
                    "a revocation is permanent: agree on a new version"
                )
            present = conn.execute(
                sa.select(contract_signatures.c.signature).where(
                    contract_signatures.c.contract_hash == h,
                    contract_signatures.c.party == approval.party,
                )
            ).first()
            if present is None:
                _insert_if_absent(
                    conn,
                    contract_signatures,
                    contract_hash=h,
                    party=approval.party,
                    signature=approval.signature,
                    recorded_at=utc_now(),
                )
            else:
                # Keep the first valid signature (ECDSA signatures differ per signing),
                # but replace one that no longer verifies (a tampered row).
                try:
                    verify_approval(contract, Approval(h, approval.party, present[0]))
                except SignatureInvalid:
                    conn.execute(
                        contract_signatures.update()
                        .where(
                            contract_signatures.c.contract_hash == h,
                            contract_signatures.c.party == approval.party,
                        )
                        .values(signature=approval.signature, recorded_at=utc_now())
                    )

    def revoke(self, contract_hash: str, party: str, signed_revocation: Revocation) -> None:
        """Record a party's signed revocation: from now on the contract is never in force.

        The revocation must be for this hash and this party and verify against the key
        the contract names for that party. Revoking twice is a no-op.
        """
        contract = self.contract(contract_hash)
        if signed_revocation.party != party or signed_revocation.contract_hash != contract.hash:
            raise ContractError("the revocation is for another party or another contract")
        contract.party(party)
        verify_revocation(contract, signed_revocation)
        with self._store.write("storing the revocation") as conn:
            if party in self._revocations(conn, contract.hash):
                return
            _insert_if_absent(
                conn,
                contract_revocations,
                contract_hash=contract.hash,
                party=party,
                time=signed_revocation.time,
                signature=signed_revocation.signature,
                recorded_at=utc_now(),
            )

    # -- state ----------------------------------------------------------------------------

    def approvals(self, contract_hash: str) -> list[Approval]:
        """The stored approvals of ``contract_hash`` (as stored: :meth:`status` verifies)."""
        h = check_contract_hash(contract_hash)
        with self._store.read("reading approvals") as conn:
            rows = conn.execute(
                sa.select(contract_signatures.c.party, contract_signatures.c.signature)
                .where(contract_signatures.c.contract_hash == h)
                .order_by(contract_signatures.c.party)
            )
            return [Approval(h, party, sig) for party, sig in rows]

    def revocations(self, contract_hash: str) -> list[Revocation]:
        """The stored revocations of ``contract_hash`` (as stored: :meth:`status` verifies)."""
        h = check_contract_hash(contract_hash)
        with self._store.read("reading revocations") as conn:
            return list(self._revocations(conn, h).values())

    def status(self, contract_hash: str) -> ContractStatus:
        """Verify everything stored for ``contract_hash`` against the clock and report."""
        return self._status(contract_hash, now=utc_now())

    def _status(self, contract_hash: str, *, now: dt.datetime) -> ContractStatus:
        h = check_contract_hash(contract_hash)
        with self._store.read("reading the contract state") as conn:
            contract = self._load(conn, h)
            rows = conn.execute(
                sa.select(contract_signatures.c.party, contract_signatures.c.signature).where(
                    contract_signatures.c.contract_hash == h
                )
            ).all()
            revocations = self._revocations(conn, h)
        names = contract.party_names
        signed: set[str] = set()
        revoked: set[str] = set()
        invalid: set[str] = set()
        for party, signature in rows:
            try:
                verify_approval(contract, Approval(h, party, signature))
                signed.add(party)
            except ContractError:  # SignatureInvalid, or a party the contract does not name
                invalid.add(party)
        for party, revocation in revocations.items():
            try:
                verify_revocation(contract, revocation)
                revoked.add(party)
            except ContractError:
                invalid.add(party)
        return ContractStatus(
            contract_hash=h,
            contract_id=contract.id,
            version=contract.version,
            parties=names,
            signed_by=tuple(n for n in names if n in signed),
            missing=tuple(n for n in names if n not in signed),
            revoked_by=tuple(n for n in names if n in revoked),
            invalid=tuple(sorted(invalid)),
            expired=contract.is_expired(now),
        )

    def require_in_force(self, contract_hash: str) -> Contract:
        """The contract if it is in force, else :class:`ConsentMissing` naming who is missing
        or revoked (:class:`ContractError` if it only expired)."""
        status = self.status(contract_hash)
        if status.in_force:
            return self.contract(contract_hash)
        if status.missing or status.revoked_by or status.invalid:
            raise ConsentMissing(status.explain())
        raise ContractError(status.explain())

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _load(conn: Connection, h: str) -> Contract:
        row = conn.execute(
            sa.select(contracts.c.document).where(contracts.c.contract_hash == h)
        ).first()
        if row is None:
            raise ContractError(f"no contract {h[:16]}… in the store (submit it first)")
        contract = Contract.from_json(row[0])
        if contract.hash != h:
            raise ContractError(f"the stored contract {h[:16]}… does not match its hash")
        return contract

    @staticmethod
    def _revocations(conn: Connection, h: str) -> dict[str, Revocation]:
        rows = conn.execute(
            sa.select(
                contract_revocations.c.party,
                contract_revocations.c.time,
                contract_revocations.c.signature,
            ).where(contract_revocations.c.contract_hash == h)
        )
        return {party: Revocation(h, party, time, sig) for party, time, sig in rows}


def _insert_if_absent(conn: Connection, table: sa.Table, **values: object) -> None:
    # Two writers racing on the same key (PostgreSQL does not serialize them the way
    # SQLite's BEGIN IMMEDIATE does): the first row wins, the second insert is a no-op.
    insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).values(**values).on_conflict_do_nothing())


__all__ = [
    "ContractInfo",
    "ContractRegistry",
    "ContractStatus",
    "contract_revocations",
    "contract_signatures",
    "contracts",
    "create_all",
    "metadata",
]
