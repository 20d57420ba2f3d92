"""Release receipts: verify one, or every one a job's ledger records, offline.

A broker signs a receipt (ES256 JWT, ``typ`` :data:`~cleanroom.broker.service.RECEIPT_TYPE`)
for every key it releases; the enclave records them in its ledger (``keys.released``).
With the contract that pins each party's broker key (``parties[].broker_key``), anyone can
check afterwards that every key the job used was released by that party's own broker,
under this contract, to an enclave whose measurement the contract allows::

    checked = check_release_receipts(read_jsonl(lines), contract)
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cleanroom.contract import Contract
from cleanroom.errors import BrokerError, ContractError, LedgerError
from cleanroom.ledger import LedgerEntry

from .service import RECEIPT_TYPE


def verify_receipt(receipt: str, broker_jwks: Mapping[str, Any] | KeySet) -> dict[str, Any]:
    """The claims of a release receipt whose signature verifies under ``broker_jwks``.

    Raises :class:`~cleanroom.errors.BrokerError` if it does not verify or is not a receipt.
    """
    if isinstance(broker_jwks, KeySet):
        keys = broker_jwks
    else:
        try:
            keys = KeySet.import_key_set(dict(broker_jwks))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError):
            raise BrokerError("the broker key set is not a JWK set") from None
    try:
        decoded = jwt.decode(receipt, keys, algorithms=["ES256"])
    except (JoseError, ValueError):
        raise BrokerError("the release receipt does not verify") from None
    if decoded.header.get("typ") != RECEIPT_TYPE:
        raise BrokerError("not a release receipt")
    return dict(decoded.claims)


def check_release_receipts(entries: Sequence[LedgerEntry], contract: Contract) -> int:
    """Check every release receipt of a job ledger against ``contract``; how many were checked.

    Each must verify under the broker key the contract pins for its party, name this
    contract, the party and one of the entry's resources, and (if the contract lists
    reference measurements) an allowed measurement. Verify the ledger itself first
    (:func:`cleanroom.ledger.verify_ledger`); this checks what its entries claim.

    Raises :class:`~cleanroom.errors.LedgerError` naming the entry (``seq``) and the party.
    """
    if not entries:
        raise LedgerError("the ledger is empty")
    genesis_contract = str(entries[0].payload.get("contract_hash", ""))
    if not hmac.compare_digest(genesis_contract, contract.hash):
        raise LedgerError("the ledger is of another contract than this one")
    allowed = set(contract.enclave.reference_measurements)
    checked = 0
    for entry in entries:
        if entry.kind != "keys.released":
            continue
        party = str(entry.payload.get("party", ""))
        where = f"entry {entry.seq} ({party})"
        try:
            jwks = contract.party(party).broker_jwks
        except ContractError:
            raise LedgerError(f"{where}: the party is not in the contract") from None
        if jwks is None:
            raise LedgerError(f"{where}: the contract pins no broker key for this party")
        resources = entry.payload.get("resources") or []
        receipts = entry.payload.get("receipts") or []
        if not isinstance(receipts, list) or len(receipts) != len(resources):
            raise LedgerError(f"{where}: one receipt per released key is missing")
        for receipt in receipts:
            try:
                claims = verify_receipt(str(receipt), jwks)
            except BrokerError as error:
                raise LedgerError(f"{where}: {error}") from None
            if claims.get("contract") != contract.hash:
                raise LedgerError(f"{where}: a receipt names another contract")
            if claims.get("party") != party or claims.get("resource") not in resources:
                raise LedgerError(f"{where}: a receipt is for another party or key")
            if allowed and claims.get("measurement") not in allowed:
                raise LedgerError(
                    f"{where}: a receipt names a measurement the contract does not allow"
                )
            checked += 1
    return checked


__all__ = ["check_release_receipts", "verify_receipt"]
