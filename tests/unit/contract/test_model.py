"""The contract document: validation, normalization and its canonical hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from cleanroom.contract import Contract, SigningKey, contract_hash, contract_json_schema
from cleanroom.errors import ContractError

DOCS = Path(__file__).parents[3] / "docs"


def test_hash_is_sha256_of_rfc8785_of_the_normalized_document(contract: Contract) -> None:
    normalized = contract.document()
    expected = hashlib.sha256(rfc8785.dumps(normalized)).hexdigest()
    assert contract_hash(contract) == contract.hash == expected
    assert len(expected) == 64


def test_hash_ignores_member_order_whitespace_and_timezone_spelling(
    document: dict[str, Any], contract: Contract
) -> None:
    reordered = dict(reversed(list(document.items())))
    reordered["created"] = "2026-01-01T01:00:00+01:00"  # the same instant
    text = json.dumps(reordered, indent=7)
    assert Contract.from_json(text).hash == contract.hash
    # the normalized form parses back to the same hash
    assert Contract.from_json(contract.to_json()).hash == contract.hash


def test_defaults_and_explicit_defaults_hash_alike(document: dict[str, Any]) -> None:
    implicit = Contract.from_mapping(document)
    document["enclave"]["allow_simulation"] = False
    document["scoring"]["probability_decimals"] = 3
    assert Contract.from_mapping(document).hash == implicit.hash
    assert implicit.document()["enclave"]["allow_simulation"] is False


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("title",), "Another title"),
        (("version",), 2),
        (("algorithm", "split", "seed"), 1),
        (("algorithm", "hyperparameters", "l2"), 0.10000000000000002),
        (("datasets", 0, "min_rows"), 51),
        (("enclave", "min_svn"), 2),
    ],
)
def test_any_edit_changes_the_hash(
    document: dict[str, Any], contract: Contract, path: tuple[Any, ...], value: Any
) -> None:
    target: Any = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert Contract.from_mapping(document).hash != contract.hash


def _invalid(document: dict[str, Any], match: str) -> None:
    with pytest.raises(ContractError, match=match):
        Contract.from_mapping(document)


def test_unknown_members_are_refused(document: dict[str, Any]) -> None:
    bad = copy.deepcopy(document)
    bad["extra"] = 1
    _invalid(bad, "extra: Extra inputs")
    bad = copy.deepcopy(document)
    bad["enclave"]["allow_debug"] = True
    _invalid(bad, "enclave.allow_debug")


def test_simulation_must_be_explicit_both_ways(document: dict[str, Any]) -> None:
    bad = copy.deepcopy(document)
    bad["enclave"]["tee_types"] = ["simulated"]
    _invalid(bad, "allow_simulation is not true")
    bad = copy.deepcopy(document)
    bad["enclave"]["allow_simulation"] = True
    _invalid(bad, "does not list 'simulated'")
    document["enclave"]["tee_types"] = ["simulated"]
    document["enclave"]["allow_simulation"] = True
    assert Contract.from_mapping(document).enclave.allow_simulation


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["datasets"].append({**d["datasets"][0], "party": "delta"}), "unknown party"),
        (lambda d: d["outputs"]["model_recipients"].append("delta"), "unknown party"),
        (lambda d: d["scoring"]["callers"].append({"party": "zed", "quota_per_day": 1}), "unknown"),
        (lambda d: d["parties"].append(copy.deepcopy(d["parties"][0])), "must not repeat"),
        (lambda d: d.__setitem__("expires", "2025-01-01T00:00:00Z"), "expires must be after"),
        (lambda d: d.__setitem__("created", "2026-01-01T00:00:00"), "timezone"),
        (lambda d: d["algorithm"]["features"].append("num"), "label must not also"),
        (lambda d: d["algorithm"].__setitem__("name", "deep_net"), "algorithm.name"),
        (lambda d: d["algorithm"]["split"].__setitem__("train_fraction", 1.0), "train_fraction"),
        (lambda d: d["algorithm"]["metrics"].append("auc"), "algorithm.metrics"),
        (lambda d: d["outputs"]["metrics"][0]["metrics"].append("log_loss_reduction"), "grants"),
        (lambda d: d["enclave"].__setitem__("reference_measurements", ["AB" * 48]), "pattern"),
        (lambda d: d["enclave"].__setitem__("tee_types", []), "enclave.tee_types"),
        (lambda d: d["parties"][0].__setitem__("broker_url", "http://broker.example"), "https"),
        (lambda d: d["parties"][0].__setitem__("name", "drop table"), "parties.0.name"),
        (lambda d: d["datasets"].append(copy.deepcopy(d["datasets"][0])), "must not repeat"),
    ],
)
def test_inconsistent_documents_are_refused(
    document: dict[str, Any], edit: Any, match: str
) -> None:
    edit(document)
    _invalid(document, match)


@pytest.mark.parametrize("value", [2**60, 2.0**60])
def test_hyperparameters_stay_portable_json(document: dict[str, Any], value: Any) -> None:
    document["algorithm"]["hyperparameters"]["x"] = value
    _invalid(document, "algorithm.hyperparameters")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_json_numbers_are_refused(document: dict[str, Any], value: Any) -> None:
    document["algorithm"]["hyperparameters"]["x"] = value
    _invalid(document, "NaN/Infinity")
    with pytest.raises(ContractError, match="NaN/Infinity"):
        Contract.from_json(json.dumps(document))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("enclave", "allow_simulation"), "yes"),
        (("enclave", "allow_simulation"), 1),
        (("version",), "1"),
        (("datasets", 0, "min_rows"), 50.0),
        (("algorithm", "split", "seed"), "0"),
    ],
)
def test_no_type_coercion(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ContractError, match="should be a valid"):
        Contract.from_mapping(document)


def test_large_exponent_floats_round_trip(document: dict[str, Any]) -> None:
    document["algorithm"]["hyperparameters"]["tiny"] = 1e-300
    document["algorithm"]["hyperparameters"]["huge"] = 1e300
    contract = Contract.from_mapping(document)
    assert Contract.from_json(contract.canonical_bytes()).hash == contract.hash


def test_shared_signing_key_is_refused(document: dict[str, Any]) -> None:
    document["parties"][1]["signing_key"] = document["parties"][0]["signing_key"]
    _invalid(document, "party signing keys must not repeat")


def test_private_keys_in_the_contract_are_refused_without_echoing_them(
    document: dict[str, Any],
) -> None:
    secret = SigningKey.generate()
    pem = secret.private_pem().decode()
    document["parties"][0]["signing_key"] = pem
    with pytest.raises(ContractError) as caught:
        Contract.from_mapping(document)
    assert "private key" in str(caught.value)
    assert pem.splitlines()[1][:24] not in str(caught.value)
    document["parties"][0]["signing_key"] = dict(secret.public_key.to_jwk(), d="x")
    _invalid(document, "parties.0.signing_key")


def test_recipient_keys_must_be_ecdh_capable(document: dict[str, Any]) -> None:
    document["parties"][0]["recipient_key"] = SigningKey.generate().public_key.to_pem()
    _invalid(document, "recipient keys must be")
    document["parties"][0]["recipient_key"] = {"kty": "OKP", "crv": "X25519", "x": "AA"}
    _invalid(document, "recipient JWK")


def test_a_pinned_broker_key_is_a_public_p256_key(document: dict[str, Any]) -> None:
    plain = Contract.from_mapping(document)
    assert plain.party("alpha").broker_jwks is None
    broker = SigningKey.generate("p256")
    document["parties"][0]["broker_key"] = broker.public_key.to_pem()
    pinned = Contract.from_mapping(document)
    assert pinned.party("alpha").broker_jwks == {"keys": [broker.public_key.to_jwk()]}
    assert pinned.hash != plain.hash  # the pin is part of what the parties sign
    document["parties"][0]["broker_key"] = broker.public_key.to_jwk()
    assert (
        Contract.from_mapping(document).party("alpha").broker_jwks
        == pinned.party("alpha").broker_jwks
    )
    document["parties"][0]["broker_key"] = SigningKey.generate().public_key.to_pem()
    _invalid(document, "EC P-256")
    secret = broker.private_pem().decode()
    document["parties"][0]["broker_key"] = secret
    with pytest.raises(ContractError) as caught:
        Contract.from_mapping(document)
    assert "private key" in str(caught.value)
    assert secret.splitlines()[1][:24] not in str(caught.value)


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        Contract.from_json("{")
    with pytest.raises(ContractError, match="JSON object"):
        Contract.from_json("[]")


def test_party_lookup(contract: Contract) -> None:
    assert contract.party_names == ("alpha", "beta", "gamma")
    assert contract.party("beta").verifying_key.algorithm == "p256"
    with pytest.raises(ContractError, match="no party"):
        contract.party("delta")


def test_committed_schema_equals_the_generated_one() -> None:
    committed = json.loads((DOCS / "contract.schema.json").read_text())
    assert committed == contract_json_schema()


def test_docs_example_validates_and_its_hash_is_the_documented_one() -> None:
    text = (DOCS / "contract.md").read_text()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    contract = Contract.from_mapping(example)
    assert f"`{contract.hash}`" in text
