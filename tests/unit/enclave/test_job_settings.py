"""How the job reads the contract: hyperparameters, features, the enclave command."""

from __future__ import annotations

import argparse

import pytest

from cleanroom.enclave.commands import TRAIN_COMMAND, parse_brokers, scoring_server
from cleanroom.enclave.job import contract_hyperparameters, spec_from_schema
from cleanroom.errors import ConfigurationError
from cleanroom.ml import medical_record_spec
from cleanroom.store import medical_record_schema
from cleanroom.tee import enclave_main

LR, GBT = "multinomial_logistic_regression", "gradient_boosted_trees"


def test_contract_hyperparameters_map_to_the_estimators() -> None:
    params, featurization, top_k = contract_hyperparameters(LR, {"l2": 0.5, "max_iter": 50})
    assert params["C"] == 2.0
    assert params["max_iter"] == 50
    assert (featurization, top_k) == ("schema", 2)
    params, _, _ = contract_hyperparameters(LR, {"c": 0.25, "l2": 4.0})
    assert params["C"] == 0.25  # an explicit C wins over l2
    params, featurization, top_k = contract_hyperparameters(
        GBT, {"l2": 0.1, "featurization": "schema", "top_k": 3}
    )
    assert params["l2_regularization"] == 0.1
    assert top_k == 3
    _, featurization, _ = contract_hyperparameters(LR, {"featurization": "article"})
    assert featurization == "article"


@pytest.mark.parametrize(
    "given",
    [{"l2": 0}, {"l2": True}, {"top_k": "2"}, {"featurization": "other"}, {"gamma": 1}],
)
def test_bad_contract_hyperparameters_are_refused(given: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        contract_hyperparameters(LR, given)


def test_the_spec_derived_from_a_schema_matches_the_built_in_one() -> None:
    assert spec_from_schema(medical_record_schema()) == medical_record_spec()


def test_the_train_command_is_registered_and_parses() -> None:
    enclave_main.load_command_modules()
    assert enclave_main.COMMANDS["train"] is TRAIN_COMMAND
    parser = argparse.ArgumentParser()
    TRAIN_COMMAND[0](parser)
    args = parser.parse_args(
        [
            "--contract",
            "ab" * 32,
            "--store",
            "sqlite:////x.db",
            "--outputs",
            "/o",
            "--broker",
            "a=http://127.0.0.1:1",
        ]
    )
    assert parse_brokers(args.broker) == {"a": "http://127.0.0.1:1"}
    with pytest.raises(ConfigurationError):
        parse_brokers(["no-equals-sign"])


def test_then_serve_finds_the_scoring_server() -> None:
    assert callable(scoring_server())


def test_brokers_are_the_contract_s_unless_the_tee_is_simulated() -> None:
    from cleanroom.enclave.job import broker_url_for

    named = "https://broker.hospital-a.example"
    assert broker_url_for(named, None, simulated=False) == named
    assert broker_url_for(named, named, simulated=False) == named
    # On the simulated TEE the operator can read the enclave anyway; tests re-route brokers.
    assert broker_url_for(named, "http://127.0.0.1:9", simulated=True) == "http://127.0.0.1:9"
    # On real hardware the operator must not swap in a broker of its own choosing …
    with pytest.raises(ConfigurationError, match="contract"):
        broker_url_for(named, "https://operator.example", simulated=False)
    # … nor reach a broker over an unauthenticated channel.
    with pytest.raises(ConfigurationError, match="https"):
        broker_url_for("http://broker.example", None, simulated=False)
