"""The scoring API in process (httpx.ASGITransport): scores, validation, auth, policy, usage."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.contract import Contract, SigningKey
from cleanroom.data.synthetic import generate_sites
from cleanroom.enclave.scoring import create_scoring_app, scoring_fastapi
from cleanroom.enclave.scoring_auth import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_request,
)
from cleanroom.enclave.scoring_models import ScoringModel
from cleanroom.errors import ConfigurationError, ConsentMissing
from cleanroom.ledger import Ledger
from cleanroom.ml import evaluate, export_onnx, medical_record_spec, train, train_test_split
from cleanroom.ml.models import TrainedModel
from cleanroom.store import default_url, medical_record_schema, open_store

START = dt.datetime(2026, 12, 3, 10, 0, 0, tzinfo=dt.UTC)
RECORD = {
    "risk": 0.0,
    "age": 63,
    "sex": 1,
    "smoker": False,
    "chestPain": 4,
    "bloodPressure": 145,
    "serumCholestoral": 233,
    "fastingBloodSugar": True,
    "maxHeartRate": 150,
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def _recipient() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "hospital_a": SigningKey.generate("ed25519"),
        "hospital_b": SigningKey.generate("p256"),
        "auditor": SigningKey.generate("ed25519"),
    }


def _contract(keys: dict[str, SigningKey], **scoring: Any) -> Contract:
    parties = [
        {
            "name": name,
            "signing_key": key.public_key.to_pem(),
            "broker_url": f"http://127.0.0.1:{8601 + i}",
            "recipient_key": _recipient(),
        }
        for i, (name, key) in enumerate(keys.items())
    ]
    features = [c for c in medical_record_spec().feature_columns]
    document = {
        "id": "scoring-test",
        "title": "scoring",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "expires": "2027-01-01T00:00:00Z",
        "parties": parties,
        "datasets": [
            {"party": n, "table": "MedicalRecords", "schema": "medical_record", "min_rows": 10}
            for n in ("hospital_a", "hospital_b")
        ],
        "algorithm": {
            "name": "multinomial_logistic_regression",
            "features": features,
            "label": "risk",
            "split": {"train_fraction": 0.8, "seed": 0},
            "metrics": ["micro_accuracy"],
        },
        "enclave": {"tee_types": ["sev-snp"], "reference_measurements": ["ab" * 48]},
        "scoring": scoring
        or {
            "callers": [
                {"party": "hospital_a", "quota_per_day": 5},
                {"party": "hospital_b", "quota_per_day": 1000},
            ],
            "probability_decimals": 3,
        },
    }
    return Contract.from_mapping(document)


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedModel, ScoringModel]:
    sites = generate_sites(2, 300, 7)
    pooled = pd.concat(list(sites.values()), ignore_index=True)
    halves = train_test_split(pooled, label="risk", seed=0)
    fitted = train(halves.train, spec=medical_record_spec())
    metrics = evaluate(fitted, halves.test)
    model = ScoringModel.from_onnx(
        export_onnx(fitted),
        metrics=metrics.to_dict(),
        receipt={"job": "unit-test", "rows": len(pooled)},
        schema=medical_record_schema(),
    )
    return fitted, model


@pytest.fixture(scope="module")
def contract(keys: dict[str, SigningKey]) -> Contract:
    return _contract(keys)


class Api:
    """Signs and sends requests to the app in process."""

    def __init__(self, app: Any, contract: Contract, keys: dict[str, SigningKey], clock: Clock):
        self.app, self.contract, self.keys, self.clock = app, contract, keys, clock

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        party: str | None = "hospital_b",
        headers: dict[str, str] | None = None,
        sign_as: str | None = None,
        contract_hash: str | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if party is not None:
            sent.update(
                sign_request(
                    self.keys[sign_as or party],
                    contract_hash=contract_hash or self.contract.hash,
                    party=party,
                    method=method,
                    path=path,
                    body=body,
                    now=self.clock.now,
                )
            )
        if body:
            sent.setdefault("content-type", "application/json")

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://enclave") as c:
                return await c.request(method, path, content=body, headers=sent)

        return asyncio.run(go())

    def score(self, record: Any = RECORD, **kwargs: Any) -> httpx.Response:
        return self.request("POST", "/score", body=json.dumps(record).encode(), **kwargs)

    def batch(self, records: list[Any], **kwargs: Any) -> httpx.Response:
        body = json.dumps({"records": records}).encode()
        return self.request("POST", "/score/batch", body=body, **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(
    trained: tuple[TrainedModel, ScoringModel],
    contract: Contract,
    keys: dict[str, SigningKey],
    clock: Clock,
) -> Api:
    app = create_scoring_app(trained[1], contract=contract, clock=clock, max_batch=50)
    return Api(app, contract, keys, clock)


def _problem(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert "Traceback" not in reply.text
    return body


# -- scoring ----------------------------------------------------------------------------


def test_score_answers_as_the_article_and_more(
    api: Api, trained: tuple[TrainedModel, ScoringModel]
) -> None:
    fitted, model = trained
    reply = api.score()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"score", "accuracy", "predictedClass", "probabilities", "modelId"}
    expected = fitted.predict_proba(pd.DataFrame([RECORD]))[0]
    assert body["predictedClass"] == body["score"] == int(np.argmax(expected))
    assert body["accuracy"] == round(100 * model.metrics["micro_accuracy"], 2)
    assert body["modelId"] == hashlib.sha256(model.onnx).hexdigest() == model.model_id
    probabilities = body["probabilities"]
    assert list(probabilities) == ["0", "1", "2", "3", "4"]
    for label, value in probabilities.items():
        assert value == round(float(expected[int(label)]), 3)  # the contract's 3 decimals
    assert abs(sum(probabilities.values()) - 1) < 0.01


def test_the_risk_field_is_ignored_and_optional(api: Api) -> None:
    without = {k: v for k, v in RECORD.items() if k != "risk"}
    assert api.score(without).json() == api.score(dict(RECORD, risk=4)).json()


def test_booleans_and_codes_are_the_same_record(api: Api) -> None:
    as_codes = dict(RECORD, smoker=0, fastingBloodSugar=1, sex=1)
    as_bools = dict(RECORD, smoker=False, fastingBloodSugar=True, sex=True)
    assert api.score(as_codes).json() == api.score(as_bools).json()


def test_unmeasured_values_may_be_null(api: Api) -> None:
    reply = api.score(dict(RECORD, serumCholestoral=None, fastingBloodSugar=None))
    assert reply.status_code == 200, reply.text


def test_batch_scores_in_order_like_single_calls(api: Api) -> None:
    records = [dict(RECORD, age=age, chestPain=1 + age % 4) for age in (30, 45, 60, 75)]
    reply = api.batch(records)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["results"]) == 4
    singles = [api.score(r).json() for r in records]
    assert body["results"] == singles
    assert body["modelId"] == singles[0]["modelId"]


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"age": "63"}, "age", "int_type"),
        ({"age": 63.5}, "age", "int_type"),
        ({"age": 5}, "age", "greater_than_equal"),
        ({"bloodPressure": 900}, "bloodPressure", "less_than_equal"),
        ({"chestPain": 7}, "chestPain", "literal_error"),
        ({"sex": 2}, "sex", "literal_error"),
        ({"smoker": "yes"}, "smoker", "literal_error"),
        ({"cholesterol": 200}, "cholesterol", "extra_forbidden"),
    ],
)
def test_field_level_422(api: Api, change: dict[str, Any], field: str, kind: str) -> None:
    problem = _problem(api.score(dict(RECORD, **change)), 422)
    errors = problem["errors"]
    assert errors[0]["loc"][0] == field
    assert any(e["type"] == kind for e in errors)
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)  # never the input value


def test_missing_fields_are_listed(api: Api) -> None:
    record = {k: v for k, v in RECORD.items() if k not in ("age", "maxHeartRate")}
    problem = _problem(api.score(record), 422)
    assert {(e["loc"][0], e["type"]) for e in problem["errors"]} == {
        ("age", "missing"),
        ("maxHeartRate", "missing"),
    }


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"null", b'"text"'])
def test_bodies_that_are_not_a_record(api: Api, body: bytes) -> None:
    _problem(api.request("POST", "/score", body=body), 422)


def test_batch_limits(api: Api) -> None:
    _problem(api.batch([]), 422)
    _problem(api.batch([RECORD] * 51), 422)
    problem = _problem(api.batch([RECORD, dict(RECORD, age="x")]), 422)
    assert problem["errors"][0]["loc"][:3] == ["records", 1, "age"]


def test_oversized_bodies_get_413(
    trained: tuple[TrainedModel, ScoringModel],
    contract: Contract,
    keys: dict[str, SigningKey],
    clock: Clock,
) -> None:
    app = create_scoring_app(trained[1], contract=contract, clock=clock, max_body_bytes=4096)
    small = Api(app, contract, keys, clock)
    padded = dict(RECORD, risk="x" * 5000)
    _problem(small.score(padded), 413)
    # Without a Content-Length (a streamed body), the limit still holds.
    body = json.dumps(padded).encode()

    async def stream() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enclave") as c:
            return await c.post("/score", content=stream())

    _problem(asyncio.run(go()), 413)


# -- authentication and policy ----------------------------------------------------------


def test_unsigned_requests_get_401(api: Api) -> None:
    reply = api.score(party=None)
    problem = _problem(reply, 401)
    assert "not signed" in problem["detail"]
    assert reply.headers["www-authenticate"].startswith("Cleanroom-Signature")


def test_an_unknown_party_gets_401(api: Api, keys: dict[str, SigningKey]) -> None:
    api.keys = {**keys, "intruder": SigningKey.generate()}
    assert "not a party" in _problem(api.score(party="intruder"), 401)["detail"]


def test_a_wrong_key_gets_401(api: Api) -> None:
    problem = _problem(api.score(party="hospital_b", sign_as="hospital_a"), 401)
    assert "does not verify" in problem["detail"]


def test_a_signature_for_another_contract_gets_401(api: Api) -> None:
    _problem(api.score(contract_hash="0" * 64), 401)


def test_a_tampered_body_gets_401(api: Api, keys: dict[str, SigningKey], clock: Clock) -> None:
    body = json.dumps(RECORD).encode()
    headers = sign_request(
        keys["hospital_b"],
        contract_hash=api.contract.hash,
        party="hospital_b",
        method="POST",
        path="/score",
        body=body,
        now=clock.now,
    )
    tampered = body.replace(b'"age": 63', b'"age": 64')
    _problem(api.request("POST", "/score", body=tampered, party=None, headers=headers), 401)
    # The same headers on another path do not verify either.
    _problem(api.request("POST", "/score/batch", body=body, party=None, headers=headers), 401)


def test_stale_and_future_timestamps_get_401(api: Api, clock: Clock) -> None:
    signed_at = clock.now
    clock.now = signed_at + dt.timedelta(seconds=61)
    reply = api.request(
        "POST",
        "/score",
        body=json.dumps(RECORD).encode(),
        party=None,
        headers=sign_request(
            api.keys["hospital_b"],
            contract_hash=api.contract.hash,
            party="hospital_b",
            method="POST",
            path="/score",
            body=json.dumps(RECORD).encode(),
            now=signed_at,
        ),
    )
    assert "window" in _problem(reply, 401)["detail"]
    clock.now = signed_at - dt.timedelta(seconds=61)
    _problem(
        api.request(
            "POST",
            "/score",
            body=json.dumps(RECORD).encode(),
            party=None,
            headers=sign_request(
                api.keys["hospital_b"],
                contract_hash=api.contract.hash,
                party="hospital_b",
                method="POST",
                path="/score",
                body=json.dumps(RECORD).encode(),
                now=signed_at,
            ),
        ),
        401,
    )


def test_a_replayed_request_gets_401(api: Api, keys: dict[str, SigningKey], clock: Clock) -> None:
    body = json.dumps(RECORD).encode()
    headers = sign_request(
        keys["hospital_b"],
        contract_hash=api.contract.hash,
        party="hospital_b",
        method="POST",
        path="/score",
        body=body,
        now=clock.now,
    )
    assert api.request("POST", "/score", body=body, party=None, headers=headers).is_success
    replay = api.request("POST", "/score", body=body, party=None, headers=headers)
    assert "already used" in _problem(replay, 401)["detail"]


@pytest.mark.parametrize(
    ("header", "value"),
    [(TIMESTAMP_HEADER, "soon"), (NONCE_HEADER, "short"), (SIGNATURE_HEADER, "A" * 85 + "!")],
)
def test_malformed_auth_headers_get_401(api: Api, header: str, value: str) -> None:
    body = json.dumps(RECORD).encode()
    headers = sign_request(
        api.keys["hospital_b"],
        contract_hash=api.contract.hash,
        party="hospital_b",
        method="POST",
        path="/score",
        body=body,
        now=api.clock.now,
    )
    headers[header] = value
    _problem(api.request("POST", "/score", body=body, party=None, headers=headers), 401)


def test_a_party_the_contract_does_not_let_score_gets_403(api: Api) -> None:
    problem = _problem(api.score(party="auditor"), 403)
    assert "does not let" in problem["detail"]
    _problem(api.request("GET", "/model", party="auditor"), 403)


def test_auth_comes_before_validation(api: Api) -> None:
    # A caller who may not score learns nothing about the schema.
    assert _problem(api.score({"age": "x"}, party="auditor"), 403)
    assert _problem(api.score({"age": "x"}, party=None), 401)


def test_an_expired_contract_refuses(api: Api, clock: Clock) -> None:
    clock.now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert "expired" in _problem(api.score(), 403)["detail"]


def test_a_revoked_contract_stops_scoring_at_the_next_request(
    trained: tuple[TrainedModel, ScoringModel],
    contract: Contract,
    keys: dict[str, SigningKey],
    clock: Clock,
) -> None:
    revoked: list[str] = []

    def consent() -> None:
        if revoked:
            raise ConsentMissing(f"revoked by {revoked[0]}")

    app = create_scoring_app(trained[1], contract=contract, clock=clock, consent=consent)
    api = Api(app, contract, keys, clock)
    assert api.score().status_code == 200
    revoked.append("hospital_b")
    assert "no longer in force" in _problem(api.score(), 403)["detail"]


def test_no_callers_means_no_scoring(
    trained: tuple[TrainedModel, ScoringModel], keys: dict[str, SigningKey], clock: Clock
) -> None:
    closed = _contract(keys, callers=[])
    api = Api(create_scoring_app(trained[1], contract=closed, clock=clock), closed, keys, clock)
    _problem(api.score(party="hospital_a"), 403)


# -- quota and usage --------------------------------------------------------------------


def test_quota_per_day_counts_records(api: Api, clock: Clock) -> None:
    for _ in range(3):
        assert api.score(party="hospital_a").status_code == 200
    assert api.batch([RECORD, RECORD], party="hospital_a").status_code == 200  # 5 of 5
    reply = api.score(party="hospital_a")
    problem = _problem(reply, 429)
    assert "5 records per day" in problem["detail"]
    assert int(reply.headers["retry-after"]) == 14 * 3600  # until midnight UTC
    # A batch that would cross the quota is refused whole; other parties are unaffected.
    assert api.score(party="hospital_b").status_code == 200
    clock.now = START + dt.timedelta(days=1)
    assert api.batch([RECORD] * 5, party="hospital_a").status_code == 200
    _problem(api.batch([RECORD], party="hospital_a"), 429)


def test_invalid_records_do_not_use_the_quota(api: Api) -> None:
    for _ in range(6):
        _problem(api.score(dict(RECORD, age=1), party="hospital_a"), 422)
    assert api.batch([RECORD] * 5, party="hospital_a").status_code == 200


def test_usage_goes_to_the_ledger_in_aggregate(
    trained: tuple[TrainedModel, ScoringModel],
    contract: Contract,
    keys: dict[str, SigningKey],
    clock: Clock,
    tmp_path: Path,
) -> None:
    with open_store(default_url(tmp_path)) as store:
        ledger = Ledger.create(store, SigningKey.generate(), ledger_id="scoring")
        app = create_scoring_app(trained[1], contract=contract, ledger=ledger, clock=clock)
        api = Api(app, contract, keys, clock)
        for _ in range(2):
            assert api.score(party="hospital_a").status_code == 200
        assert api.batch([RECORD] * 3, party="hospital_b").status_code == 200
        _problem(api.batch([RECORD] * 4, party="hospital_a"), 429)
        assert [e.kind for e in ledger.entries()] == ["ledger.genesis"]  # window still open
        clock.now = START + dt.timedelta(hours=1, minutes=5)
        assert api.score(party="hospital_b").status_code == 200  # closes 10:00-11:00
        scoring_fastapi(app).state.usage.flush()  # closes 11:00-11:05 (shutdown)
        entries = ledger.entries()
        ledger.verify()
    usage = [e.payload for e in entries if e.kind == "scoring.usage"]
    assert usage == [
        {
            "contract_hash": contract.hash,
            "model_id": trained[1].model_id,
            "window_start": "2026-12-03T10:00:00Z",
            "window_end": "2026-12-03T11:00:00Z",
            "parties": {
                "hospital_a": {"records": 2, "requests": 2, "over_quota": 1},
                "hospital_b": {"records": 3, "requests": 1, "over_quota": 0},
            },
        },
        {
            "contract_hash": contract.hash,
            "model_id": trained[1].model_id,
            "window_start": "2026-12-03T11:00:00Z",
            "window_end": "2026-12-03T11:05:00Z",
            "parties": {"hospital_b": {"records": 1, "requests": 1, "over_quota": 0}},
        },
    ]
    text = json.dumps([e.payload for e in entries])
    for field in RECORD:
        assert f'"{field}"' not in text


def test_no_patient_data_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    distinctive = dict(RECORD, age=97, bloodPressure=211, serumCholestoral=613)
    with caplog.at_level(logging.DEBUG):
        assert api.score(distinctive).status_code == 200
        _problem(api.score(dict(distinctive, chestPain=9)), 422)
        _problem(api.score(distinctive, party="auditor"), 403)
        for _ in range(6):
            api.score(distinctive, party="hospital_a")
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records  # refusals are logged ...
    for value in ("97", "211", "613", "serumCholestoral", "chestPain", "bloodPressure"):
        assert value not in logged  # ... without any of the record


# -- the other endpoints ------------------------------------------------------------------


def test_model_endpoint(api: Api, trained: tuple[TrainedModel, ScoringModel]) -> None:
    reply = api.request("GET", "/model")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["modelId"] == trained[1].model_id
    assert body["algorithm"] == "multinomial_logistic_regression"
    assert body["metrics"]["micro_accuracy"] == trained[1].metrics["micro_accuracy"]
    assert body["receipt"] == {"job": "unit-test", "rows": 600}
    assert body["contractHash"] == api.contract.hash
    _problem(api.request("GET", "/model", party=None), 401)


def test_health_and_openapi_need_no_signature(api: Api) -> None:
    assert api.request("GET", "/healthz", party=None).json() == {"status": "ok"}
    spec = api.request("GET", "/openapi.json", party=None).json()
    assert {"/score", "/score/batch", "/model", "/healthz"} <= set(spec["paths"])
    record = spec["components"]["schemas"]["MedicalRecord"]
    assert set(record["required"]) == {c for c in RECORD if c != "risk"}
    assert record["properties"]["chestPain"]["anyOf"][0]["enum"] == [1, 2, 3, 4]
    _problem(api.request("GET", "/nowhere", party=None), 404)
    _problem(api.request("DELETE", "/score", party=None), 405)


def test_another_schema_needs_no_code_change(keys: dict[str, SigningKey], clock: Clock) -> None:
    from cleanroom.ml import FeatureSpec
    from cleanroom.store import DatasetSchema

    schema = DatasetSchema.from_dict(
        {
            "table": "Loans",
            "label": "grade",
            "columns": [
                {"name": "grade", "type": "tinyint", "categories": [0, 1, 2]},
                {"name": "income", "type": "float", "min": 0, "max": 1e7},
                {"name": "region", "type": "tinyint", "categories": [1, 2, 3]},
                {"name": "owner", "type": "bit"},
            ],
        }
    )
    spec = FeatureSpec(
        numeric=("income",),
        categorical={"region": ("1", "2", "3"), "owner": ("0", "1")},
        label="grade",
        classes=(0, 1, 2),
    )
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": rng.uniform(1e4, 2e5, 300),
            "region": rng.integers(1, 4, 300),
            "owner": rng.integers(0, 2, 300),
        }
    )
    frame["grade"] = (frame["income"] > 7e4).astype(int) + (frame["income"] > 1.4e5)
    fitted = train(frame, spec=spec)
    model = ScoringModel.from_onnx(
        export_onnx(fitted), metrics={"micro_accuracy": 0.9}, schema=schema
    )
    contract = _contract(keys)
    api = Api(create_scoring_app(model, contract=contract, clock=clock), contract, keys, clock)
    reply = api.score({"income": 150000.5, "region": 2, "owner": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["score"] == 2
    assert list(reply.json()["probabilities"]) == ["0", "1", "2"]
    problem = _problem(api.score({"income": -1, "region": 4, "owner": 1}), 422)
    assert {e["loc"][0] for e in problem["errors"]} == {"income", "region"}


def test_scoring_model_checks(trained: tuple[TrainedModel, ScoringModel], tmp_path: Path) -> None:
    model = trained[1]
    with pytest.raises(ConfigurationError, match="micro_accuracy"):
        ScoringModel.from_onnx(model.onnx, metrics={"log_loss": 1.0})
    with pytest.raises(ConfigurationError, match="ONNX"):
        ScoringModel.from_onnx(b"not onnx", metrics={"micro_accuracy": 0.5})
    loaded = ScoringModel.load(model.save(tmp_path / "model"))
    assert loaded.model_id == model.model_id
    assert loaded.metrics == model.metrics
    assert loaded.receipt == model.receipt
    assert loaded.schema == model.schema
    assert "onnx" not in repr(loaded).split("spec=")[0].replace("ScoringModel(", "")


# -- property: no input makes the API fail -------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_records = st.fixed_dictionaries(
    {},
    optional={name: _json | st.integers(0, 300) for name in RECORD},
)


@pytest.fixture(scope="module")
def fuzz_api(
    trained: tuple[TrainedModel, ScoringModel], contract: Contract, keys: dict[str, SigningKey]
) -> Api:
    clock = Clock()
    return Api(
        create_scoring_app(trained[1], contract=contract, clock=clock), contract, keys, clock
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=_records | _json, batch=st.booleans())
def test_no_input_gives_a_500(fuzz_api: Api, record: Any, batch: bool) -> None:
    try:
        body = json.dumps({"records": [record]} if batch else record).encode()
    except ValueError:
        return
    path = "/score/batch" if batch else "/score"
    reply = fuzz_api.request("POST", path, body=body)
    assert reply.status_code in (200, 422), reply.text
    if reply.status_code == 422:
        assert reply.json()["errors"]


def test_an_unexpected_failure_is_a_500_problem_without_details(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cleanroom.enclave import scoring_models

    def broken(self: Any, rows: Any) -> Any:
        raise RuntimeError(f"leaky failure quoting {rows}")

    monkeypatch.setattr(scoring_models.OnnxScorer, "score", broken)
    with caplog.at_level(logging.DEBUG):
        problem = _problem(api.score(dict(RECORD, serumCholestoral=613)), 500)
    assert problem["detail"] == "the enclave could not answer"
    assert "613" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_malformed_json_from_a_stranger_is_a_401(api: Api) -> None:
    _problem(api.request("POST", "/score", body=b"{not json", party=None), 401)
    _problem(api.request("POST", "/score", body=b"{not json", party="auditor"), 403)


def test_the_examples_in_docs_scoring_md_match_the_api(api: Api) -> None:
    text = (Path(__file__).parents[3] / "docs" / "scoring.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    request, answer, problem = blocks[0], blocks[1], blocks[2]
    reply = api.score(request)
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == set(answer)
    assert list(reply.json()["probabilities"]) == list(answer["probabilities"])
    invalid = _problem(api.score(dict(request, chestPain=9)), 422)
    assert set(invalid) == set(problem)
    assert invalid["errors"][0] == problem["errors"][0]
