"""Signed scoring requests, the replay cache, the usage meter, and the client's checks."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.client import ScoringClient
from cleanroom.client.scoring import scoring_policy
from cleanroom.contract import Contract, SigningKey
from cleanroom.contract.keys import b64url_decode
from cleanroom.enclave.scoring_auth import (
    NONCE_HEADER,
    PARTY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refusal,
    RequestAuthenticator,
    UsageMeter,
    request_message,
    sign_request,
)
from cleanroom.errors import ConfigurationError, ContractError, LedgerError

NOW = dt.datetime(2026, 12, 3, 23, 59, 0, tzinfo=dt.UTC)
KEYS = {"a": SigningKey.generate("ed25519"), "b": SigningKey.generate("p256")}


def _recipient() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _contract(*, simulated: bool = False) -> Contract:
    return Contract.from_mapping(
        {
            "id": "auth",
            "title": "auth",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": [
                {
                    "name": name,
                    "signing_key": key.public_key.to_pem(),
                    "broker_url": "http://127.0.0.1:8601",
                    "recipient_key": _recipient(),
                }
                for name, key in KEYS.items()
            ],
            "datasets": [{"party": "a", "table": "t", "schema": "s", "min_rows": 1}],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": ["x"],
                "label": "y",
                "split": {"train_fraction": 0.8},
                "metrics": ["micro_accuracy"],
            },
            "enclave": {
                "tee_types": ["simulated", "sev-snp"] if simulated else ["sev-snp"],
                "reference_measurements": ["ab" * 48],
                "min_svn": 2,
                "allow_simulation": simulated,
            },
            "scoring": {"callers": [{"party": "a", "quota_per_day": 10}]},
        }
    )


CONTRACT = _contract()


def _headers(party: str = "a", body: bytes = b"{}", **kwargs: Any) -> dict[str, str]:
    return sign_request(
        KEYS[party],
        contract_hash=CONTRACT.hash,
        party=party,
        method="POST",
        path="/score",
        body=body,
        now=kwargs.pop("now", NOW),
        **kwargs,
    )


def test_the_signed_message_is_the_documented_json() -> None:
    message = request_message(
        contract_hash="c" * 64,
        party="a",
        method="post",
        path="/score",
        body=b"{}",
        timestamp=1,
        nonce="n" * 22,
    )
    assert message == rfc8785.dumps(
        {
            "body_sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "contract_hash": "c" * 64,
            "method": "POST",
            "nonce": "n" * 22,
            "party": "a",
            "path": "/score",
            "purpose": "cleanroom.scoring.request/1",
            "timestamp": 1,
        }
    )
    headers = _headers()
    assert set(headers) == {PARTY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert len(b64url_decode(headers[SIGNATURE_HEADER])) == 64
    assert headers[TIMESTAMP_HEADER] == str(int(NOW.timestamp()))


def test_authenticate_accepts_both_algorithms_once() -> None:
    auth = RequestAuthenticator(CONTRACT)
    for party in ("a", "b"):
        headers = _headers(party)
        assert (
            auth.authenticate(method="POST", path="/score", body=b"{}", headers=headers, now=NOW)
            == party
        )
        with pytest.raises(Refusal, match="already used"):
            auth.authenticate(method="POST", path="/score", body=b"{}", headers=headers, now=NOW)


def test_the_skew_window_is_inclusive_and_bounded() -> None:
    auth = RequestAuthenticator(CONTRACT, max_skew=dt.timedelta(seconds=30))
    edge = NOW + dt.timedelta(seconds=30)
    assert auth.authenticate(method="POST", path="/score", body=b"{}", headers=_headers(), now=edge)
    with pytest.raises(Refusal) as caught:
        auth.authenticate(
            method="POST",
            path="/score",
            body=b"{}",
            headers=_headers(),
            now=edge + dt.timedelta(seconds=1),
        )
    assert caught.value.status == 401
    with pytest.raises(ConfigurationError):
        RequestAuthenticator(CONTRACT, max_skew=dt.timedelta(hours=1))


def test_a_full_replay_cache_refuses_with_503_then_recovers() -> None:
    auth = RequestAuthenticator(CONTRACT, max_skew=dt.timedelta(seconds=10), max_nonces=2)
    for _ in range(2):
        auth.authenticate(method="POST", path="/score", body=b"{}", headers=_headers(), now=NOW)
    with pytest.raises(Refusal) as caught:
        auth.authenticate(method="POST", path="/score", body=b"{}", headers=_headers(), now=NOW)
    assert caught.value.status == 503
    later = NOW + dt.timedelta(seconds=30)  # the old nonces can no longer pass the skew check
    assert auth.authenticate(
        method="POST", path="/score", body=b"{}", headers=_headers(now=later), now=later
    )


def test_a_bad_signature_does_not_burn_the_nonce() -> None:
    auth = RequestAuthenticator(CONTRACT)
    headers = _headers()
    forged = dict(headers, **{SIGNATURE_HEADER: _headers("b")[SIGNATURE_HEADER]})
    with pytest.raises(Refusal, match="does not verify"):
        auth.authenticate(method="POST", path="/score", body=b"{}", headers=forged, now=NOW)
    assert auth.authenticate(method="POST", path="/score", body=b"{}", headers=headers, now=NOW)


class _Ledger:
    def __init__(self, *, fail: int = 0) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def append(self, kind: str, payload: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise LedgerError("down")
        self.entries.append((kind, json.loads(json.dumps(payload))))


def test_usage_meter_quota_day_boundary_and_windows() -> None:
    ledger = _Ledger()
    meter = UsageMeter(CONTRACT, model_id="m", ledger=ledger, clock=lambda: NOW)
    assert meter.consume("a", 8, NOW) == 2
    with pytest.raises(Refusal) as caught:
        meter.consume("a", 3, NOW)
    assert caught.value.status == 429
    assert caught.value.retry_after == 60  # 23:59 -> midnight UTC
    with pytest.raises(Refusal) as caught:
        meter.consume("b", 1, NOW)
    assert caught.value.status == 403
    tomorrow = NOW + dt.timedelta(minutes=2)
    assert meter.consume("a", 10, tomorrow) == 0
    assert meter.used_today("a", tomorrow) == 10
    assert ledger.entries == [
        (
            "scoring.usage",
            {
                "contract_hash": CONTRACT.hash,
                "model_id": "m",
                "window_start": "2026-12-03T23:00:00Z",
                "window_end": "2026-12-04T00:00:00Z",
                "parties": {"a": {"records": 8, "requests": 1, "over_quota": 1}},
            },
        )
    ]


def test_usage_meter_retries_a_failed_ledger_write() -> None:
    ledger = _Ledger(fail=1)
    meter = UsageMeter(CONTRACT, model_id="m", ledger=ledger, clock=lambda: NOW)
    meter.consume("a", 1, NOW)
    meter.flush(NOW + dt.timedelta(seconds=1))  # fails: kept
    assert ledger.entries == []
    meter.flush(NOW + dt.timedelta(seconds=2))  # nothing new in this window, the old one goes
    assert [p["parties"] for _, p in ledger.entries] == [
        {"a": {"records": 1, "requests": 1, "over_quota": 0}}
    ]


@pytest.mark.parametrize("window", [dt.timedelta(seconds=0), dt.timedelta(seconds=7)])
def test_usage_windows_divide_a_day(window: dt.timedelta) -> None:
    with pytest.raises(ConfigurationError):
        UsageMeter(CONTRACT, model_id="m", window=window)


def test_the_client_policy_comes_from_the_contract() -> None:
    policy = scoring_policy(CONTRACT)
    assert policy.allowed_tees == {"sev-snp"}
    assert policy.allowed_measurements == {"ab" * 48}
    assert policy.required_config_id == CONTRACT.hash
    assert policy.min_svn == 2
    assert not policy.allow_simulation
    with pytest.raises(ConfigurationError, match="does not allow"):
        scoring_policy(CONTRACT, insecure_simulation=True)
    simulated = _contract(simulated=True)
    assert not scoring_policy(simulated).allow_simulation  # the caller must also say so
    assert scoring_policy(simulated, insecure_simulation=True).allow_simulation


def test_the_client_refuses_bad_settings_before_any_connection() -> None:
    good: dict[str, Any] = {"contract": CONTRACT, "party": "a", "signing_key": KEYS["a"]}
    with pytest.raises(ConfigurationError, match="https"):
        ScoringClient("http://127.0.0.1:1", **good)
    with pytest.raises(ConfigurationError, match="not a's key"):
        ScoringClient("https://127.0.0.1:1", **dict(good, signing_key=KEYS["b"]))
    with pytest.raises(ContractError, match="names no party"):
        ScoringClient("https://127.0.0.1:1", **dict(good, party="z"))
    with pytest.raises(ConfigurationError, match="not both"):
        ScoringClient(
            "https://127.0.0.1:1",
            **good,
            policy=scoring_policy(CONTRACT),
            insecure_simulation=True,
        )
    client = ScoringClient("https://127.0.0.1:1", **good)
    assert client.claims is None
    assert "party='a'" in repr(client)
    assert "SigningKey" not in repr(client)


def test_a_quiet_window_is_closed_by_the_timer() -> None:
    ledger = _Ledger()
    start = dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.UTC)
    meter = UsageMeter(CONTRACT, model_id="m", ledger=ledger, clock=lambda: start)
    meter.consume("a", 2, start)
    meter.close_ended(start + dt.timedelta(minutes=29))  # 10:59: still open
    assert ledger.entries == []
    meter.close_ended(start + dt.timedelta(minutes=31))  # 11:01: 10:00-11:00 is written
    assert [(p["window_start"], p["window_end"]) for _, p in ledger.entries] == [
        ("2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z")
    ]
    meter.close_ended(start + dt.timedelta(hours=3))  # nothing happened since: nothing new
    assert len(ledger.entries) == 1
