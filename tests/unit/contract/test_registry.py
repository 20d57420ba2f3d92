"""The contract registry in the store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from cleanroom.contract import (
    Contract,
    ContractRegistry,
    SigningKey,
    sign_approval,
    sign_revocation,
)
from cleanroom.contract.keys import b64url_encode
from cleanroom.contract.registry import contract_revocations, contract_signatures, contracts
from cleanroom.errors import ConsentMissing, ContractError, SignatureInvalid
from cleanroom.store import Store

Keys = dict[str, SigningKey]


def _sign_all(registry: ContractRegistry, h: str, keys: Keys) -> None:
    for name, key in keys.items():
        registry.sign(h, name, key)


def test_in_force_only_when_every_party_signed(
    store: Store, contract: Contract, party_keys: Keys
) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    assert h == contract.hash
    assert registry.submit(contract) == h  # idempotent
    status = registry.status(h)
    assert not status.in_force
    assert status.missing == ("alpha", "beta", "gamma")
    registry.sign(h, "alpha", party_keys["alpha"])
    registry.sign(h, "beta", party_keys["beta"])
    status = registry.status(h)
    assert status.signed_by == ("alpha", "beta")
    assert status.missing == ("gamma",)
    with pytest.raises(ConsentMissing, match="not signed by gamma"):
        registry.require_in_force(h)
    registry.sign(h, "gamma", party_keys["gamma"])
    status = registry.status(h)
    assert status.in_force
    assert status.missing == ()
    assert status.revoked_by == ()
    assert registry.require_in_force(h).hash == h
    assert registry.contract(h) == contract
    assert [info.contract_hash for info in registry.list_contracts()] == [h]


def test_signature_made_offline_is_verified_before_storing(
    store: Store, contract: Contract, party_keys: Keys
) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    approval = sign_approval(contract, "beta", party_keys["beta"])
    registry.add_signature(h, "beta", approval.signature)
    registry.add_signature(h, "beta", approval.signature_bytes())  # idempotent, raw bytes too
    assert registry.status(h).signed_by == ("beta",)
    # beta's valid signature presented as alpha's
    with pytest.raises(SignatureInvalid, match="alpha"):
        registry.add_signature(h, "alpha", approval.signature)
    forged = bytearray(approval.signature_bytes())
    forged[10] ^= 0x01
    with pytest.raises(SignatureInvalid):
        registry.add_signature(h, "gamma", bytes(forged))
    with pytest.raises(SignatureInvalid):
        registry.add_signature(h, "gamma", "not*base64")
    assert registry.status(h).signed_by == ("beta",)


def test_signing_for_someone_else_or_as_a_stranger_is_refused(
    store: Store, contract: Contract, party_keys: Keys
) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    with pytest.raises(ContractError, match=r"not the signing key .* 'beta'"):
        registry.sign(h, "beta", party_keys["alpha"])
    with pytest.raises(ContractError, match="no party 'mallory'"):
        registry.sign(h, "mallory", SigningKey.generate())
    with pytest.raises(ContractError, match="no party 'mallory'"):
        registry.add_signature(h, "mallory", b"\x00" * 64)
    assert registry.status(h).signed_by == ()


def test_edited_contract_needs_fresh_signatures(
    store: Store, document: dict[str, Any], party_keys: Keys
) -> None:
    registry = ContractRegistry(store)
    v1 = Contract.from_mapping(document)
    h1 = registry.submit(v1)
    _sign_all(registry, h1, party_keys)
    assert registry.status(h1).in_force
    document["algorithm"]["features"].append("chol")
    v2 = Contract.from_mapping(document)
    h2 = registry.submit(v2)
    assert h2 != h1
    assert registry.status(h2).missing == ("alpha", "beta", "gamma")
    old = sign_approval(v1, "alpha", party_keys["alpha"])
    with pytest.raises(SignatureInvalid):
        registry.add_signature(h2, "alpha", old.signature)
    assert registry.status(h1).in_force  # the old version is untouched


def test_revocation_is_a_permanent_veto(store: Store, contract: Contract, party_keys: Keys) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    _sign_all(registry, h, party_keys)
    revocation = sign_revocation(contract, "gamma", party_keys["gamma"])
    registry.revoke(h, "gamma", revocation)
    registry.revoke(h, "gamma", revocation)  # twice is a no-op
    status = registry.status(h)
    assert not status.in_force
    assert status.revoked_by == ("gamma",)
    assert status.signed_by == ("alpha", "beta", "gamma")
    with pytest.raises(ConsentMissing, match="revoked by gamma"):
        registry.require_in_force(h)
    # no approval is accepted afterwards, not even a fresh one by the revoker
    with pytest.raises(ConsentMissing, match="permanent"):
        registry.sign(h, "gamma", party_keys["gamma"])
    assert len(registry.revocations(h)) == 1


def test_revocations_are_checked(store: Store, contract: Contract, party_keys: Keys) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    by_alpha = sign_revocation(contract, "alpha", party_keys["alpha"])
    with pytest.raises(ContractError, match="another party"):
        registry.revoke(h, "beta", by_alpha)
    with pytest.raises(ContractError, match="not the signing key"):
        sign_revocation(contract, "beta", party_keys["alpha"])
    forged = type(by_alpha)(h, "beta", by_alpha.time, by_alpha.signature)
    with pytest.raises(SignatureInvalid):
        registry.revoke(h, "beta", forged)
    later = type(by_alpha)(h, "alpha", "2099-01-01T00:00:00Z", by_alpha.signature)
    with pytest.raises(SignatureInvalid):
        registry.revoke(h, "alpha", later)  # the time is signed too
    assert registry.status(h).revoked_by == ()
    registry.revoke(h, "alpha", by_alpha)  # a veto before signing is allowed
    assert registry.status(h).revoked_by == ("alpha",)


def test_tampered_store_fails_closed(store: Store, contract: Contract, party_keys: Keys) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    _sign_all(registry, h, party_keys)
    beta = registry.approvals(h)[1]
    assert beta.party == "beta"
    with store.engine.begin() as conn:
        # the operator moves beta's signature onto gamma's row
        conn.execute(
            contract_signatures.update()
            .where(contract_signatures.c.party == "gamma")
            .values(signature=beta.signature)
        )
    status = registry.status(h)
    assert not status.in_force
    assert status.invalid == ("gamma",)
    # gamma signing again repairs the tampered row
    registry.sign(h, "gamma", party_keys["gamma"])
    assert registry.status(h).in_force
    # a forged revocation (bad signature) also keeps the contract out of force
    with store.engine.begin() as conn:
        conn.execute(
            contract_revocations.insert().values(
                contract_hash=h,
                party="alpha",
                time="2026-06-01T00:00:00Z",
                signature=b64url_encode(b"\x01" * 64),
                recorded_at=dt.datetime.now(dt.UTC),
            )
        )
    status = registry.status(h)
    assert not status.in_force
    assert status.invalid == ("alpha",)
    assert status.revoked_by == ()


def test_edited_stored_document_is_detected(store: Store, contract: Contract) -> None:
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    edited = contract.canonical_bytes().decode().replace('"min_svn":1', '"min_svn":0')
    with store.engine.begin() as conn:
        conn.execute(contracts.update().values(document=edited))
    with pytest.raises(ContractError, match="does not match its hash"):
        registry.status(h)


def test_expired_contract_is_not_in_force(
    store: Store, document: dict[str, Any], party_keys: Keys
) -> None:
    document["created"] = "2020-01-01T00:00:00Z"
    document["expires"] = "2021-01-01T00:00:00Z"
    contract = Contract.from_mapping(document)
    registry = ContractRegistry(store)
    h = registry.submit(contract)
    _sign_all(registry, h, party_keys)
    status = registry.status(h)
    assert status.expired
    assert not status.in_force
    assert status.missing == ()
    with pytest.raises(ContractError, match="expired") as caught:
        registry.require_in_force(h)
    assert not isinstance(caught.value, ConsentMissing)
    fresh = registry._status(h, now=dt.datetime(2020, 6, 1, tzinfo=dt.UTC))
    assert fresh.in_force


def test_unknown_and_malformed_hashes(store: Store) -> None:
    registry = ContractRegistry(store)
    with pytest.raises(ContractError, match="no contract"):
        registry.status("0" * 64)
    with pytest.raises(ContractError, match="64 lowercase hex"):
        registry.status("XYZ")


def test_tables_live_beside_the_catalog(store: Store) -> None:
    ContractRegistry(store)
    ContractRegistry(store)  # creating twice is fine
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"contracts", "contract_signatures", "contract_revocations"} <= names
    assert "column_master_keys" in names


def test_concurrent_submits_and_signatures(
    store: Store, contract: Contract, party_keys: Keys
) -> None:
    import threading

    registry = ContractRegistry(store)
    errors: list[Exception] = []

    def work(name: str) -> None:
        try:
            for _ in range(3):
                h = registry.submit(contract)
                registry.sign(h, name, party_keys[name])
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in (*party_keys, *party_keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert registry.status(contract.hash).in_force
    assert len(registry.list_contracts()) == 1


def test_approval_and_revocation_json_round_trip(
    store: Store, contract: Contract, party_keys: Keys
) -> None:
    from cleanroom.contract import Approval, Revocation

    registry = ContractRegistry(store)
    h = registry.submit(contract)
    approval = Approval.from_json(sign_approval(contract, "alpha", party_keys["alpha"]).to_json())
    registry.add_signature(h, approval.party, approval.signature)
    revocation = sign_revocation(contract, "beta", party_keys["beta"])
    registry.revoke(h, "beta", Revocation.from_json(revocation.to_json()))
    assert registry.revocations(h) == [revocation]
    with pytest.raises(ContractError, match="exactly the members"):
        Approval.from_json({**approval.to_json(), "extra": "x"})
    with pytest.raises(ContractError, match="are strings"):
        Revocation.from_json({**revocation.to_json(), "time": 1})
