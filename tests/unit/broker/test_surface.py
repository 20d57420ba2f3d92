"""The public surface of cleanroom.broker is pinned, and key objects stay opaque."""

from __future__ import annotations

import datetime as dt
import pickle

import httpx
import pytest

import cleanroom.broker
from cleanroom.broker import BrokerSettings, KbsClient
from cleanroom.errors import ConfigurationError

EXPECTED = [
    "CEK_TYPE",
    "COOKIE",
    "ENCLAVE_COMMAND",
    "PROTOCOL_VERSION",
    "RECEIPT_HEADER",
    "RELEASE_RULES",
    "AttestedEnclave",
    "Authorization",
    "BrokerSettings",
    "ContractAuthority",
    "DecisionLog",
    "KbsClient",
    "KeyRelease",
    "ReleasePolicy",
    "ResourcePath",
    "add_veto",
    "create_app",
    "fetch_cek",
    "read_vetoes",
    "seal",
    "unseal",
    "verify_decision_log",
]


def test_public_names_are_pinned() -> None:
    assert sorted(cleanroom.broker.__all__) == sorted(EXPECTED)
    for name in EXPECTED:
        assert getattr(cleanroom.broker, name) is not None


def test_settings_refuse_contradictions() -> None:
    with pytest.raises(ConfigurationError, match="insecure_simulation"):
        BrokerSettings(party="hospital_a", insecure_simulation=True)
    with pytest.raises(ConfigurationError, match="go together"):
        BrokerSettings(party="hospital_a", verifier_jwks={"keys": []})
    with pytest.raises(ConfigurationError, match="identifier"):
        BrokerSettings(party="../etc")
    with pytest.raises(ConfigurationError, match="10 minutes"):
        BrokerSettings(party="a", token_lifetime=dt.timedelta(hours=1))
    settings = BrokerSettings(party="hospital_a")
    assert settings.issuer == "cleanroom-broker:hospital_a"
    assert not settings.insecure_simulation


def test_kbs_client_cannot_be_pickled() -> None:
    class NoPlatform:
        tee = "simulated"

        def evidence(self, report_data: bytes) -> object:
            raise AssertionError("not called")

    with httpx.Client(base_url="http://127.0.0.1:9") as http:
        client = KbsClient(http, platform=NoPlatform())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pickle.dumps(client)
        assert repr(client) == "KbsClient(broker='http://127.0.0.1:9', attested=False)"
