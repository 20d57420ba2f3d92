"""A real enclave process (simulated TEE) serving the scoring API over RA-TLS on loopback."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.attestation import attested_httpx_client
from cleanroom.cli import main
from cleanroom.client import ScoringClient
from cleanroom.client.scoring import scoring_policy
from cleanroom.contract import Contract, SigningKey, VerifyingKey
from cleanroom.enclave.scoring_auth import sign_request
from cleanroom.enclave.scoring_models import ScoringModel
from cleanroom.errors import PolicyViolation, ScoringError
from cleanroom.ledger import read_entries, verify_ledger
from cleanroom.ml import evaluate, export_onnx, medical_record_spec, train, train_test_split
from cleanroom.ml.models import TrainedModel
from cleanroom.store import default_url, medical_record_schema, open_store
from cleanroom.tee import Bundle, EnclaveProcess, SimulatedLauncher

RECORD = {
    "age": 58,
    "sex": 0,
    "smoker": True,
    "chestPain": 3,
    "bloodPressure": 132,
    "serumCholestoral": 224,
    "fastingBloodSugar": False,
    "maxHeartRate": 173,
}
PARTIES = ("hospital_a", "hospital_b", "hospital_c", "auditor")


@dataclass
class World:
    launcher: SimulatedLauncher
    bundle: Bundle
    contract: Contract
    keys: dict[str, SigningKey]
    fitted: TrainedModel
    model: ScoringModel
    store_url: str
    workdir: Path
    process: EnclaveProcess | None = None
    url: str = ""
    ledger_key: dict[str, Any] = dataclasses.field(default_factory=dict)

    def client(self, party: str = "hospital_b", **kwargs: Any) -> ScoringClient:
        return ScoringClient(
            self.url,
            contract=self.contract,
            party=party,
            signing_key=self.keys[party],
            trusted_roots=[self.launcher.root_certificate],
            insecure_simulation=True,
            **kwargs,
        )


def _recipient() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _contract(keys: dict[str, SigningKey], measurement: str) -> Contract:
    return Contract.from_mapping(
        {
            "id": "scoring-e2e",
            "title": "scoring over RA-TLS",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": [
                {
                    "name": name,
                    "signing_key": keys[name].public_key.to_pem(),
                    "broker_url": f"http://127.0.0.1:{8601 + i}",
                    "recipient_key": _recipient(),
                }
                for i, name in enumerate(PARTIES)
            ],
            "datasets": [
                {
                    "party": "hospital_a",
                    "table": "MedicalRecords",
                    "schema": "medical_record",
                    "min_rows": 10,
                }
            ],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": list(medical_record_spec().feature_columns),
                "label": "risk",
                "split": {"train_fraction": 0.8, "seed": 0},
                "metrics": ["micro_accuracy"],
            },
            "enclave": {
                "tee_types": ["simulated"],
                "reference_measurements": [measurement],
                "allow_simulation": True,
            },
            "scoring": {
                "callers": [
                    {"party": "hospital_a", "quota_per_day": 3},
                    {"party": "hospital_b", "quota_per_day": 10_000},
                    {"party": "hospital_c", "quota_per_day": 10_000},
                ],
                "probability_decimals": 2,
            },
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from cleanroom.data.synthetic import generate_sites

    base = tmp_path_factory.mktemp("scoring")
    launcher = SimulatedLauncher(allow_simulation=True, workdir=base / "sim")
    bundle = launcher.prepare_bundle(base / "bundle")
    keys = {
        name: SigningKey.generate("p256" if i % 2 else "ed25519") for i, name in enumerate(PARTIES)
    }
    contract = _contract(keys, bundle.measurement)
    pooled = pd.concat(list(generate_sites(2, 300, 3).values()), ignore_index=True)
    halves = train_test_split(pooled, label="risk", seed=0)
    fitted = train(halves.train, spec=medical_record_spec())
    model = ScoringModel.from_onnx(
        export_onnx(fitted),
        metrics=evaluate(fitted, halves.test).to_dict(),
        receipt={"contract_hash": contract.hash},
        schema=medical_record_schema(),
    )
    model.save(base / "model")
    (base / "contract.json").write_text(contract.to_json())
    (base / "store").mkdir()
    world = World(
        launcher, bundle, contract, keys, fitted, model, default_url(base / "store"), base
    )
    process = launcher.launch(
        [
            "serve-model",
            "--model-dir",
            str(base / "model"),
            "--contract",
            str(base / "contract.json"),
            "--store",
            world.store_url,
            "--ledger-id",
            "scoring",
        ],
        config_id=bytes.fromhex(contract.hash),
        bundle=bundle,
    )
    try:
        world.ledger_key = process.wait_event("ledger", timeout=120)["public_key"]
        assert process.wait_event("model")["model_id"] == model.model_id
        world.url = f"https://127.0.0.1:{process.wait_event('ready')['port']}"
        world.process = process
        yield world
    finally:
        process.stop()
        shutil.rmtree(bundle.path, ignore_errors=True)


def test_scores_over_attested_tls(world: World) -> None:
    expected = world.fitted.predict_proba(pd.DataFrame([RECORD]))[0]
    with world.client() as client:
        result = client.score(dict(RECORD, risk=0.0))
        assert client.claims is not None
        assert client.claims.measurement == world.bundle.measurement
        assert client.claims.config_id == world.contract.hash
        batch = client.score_batch([RECORD, dict(RECORD, age=71, chestPain=4)])
    assert result["score"] == result["predictedClass"] == int(expected.argmax())
    assert result["accuracy"] == world.model.accuracy_percent
    assert result["modelId"] == world.model.model_id
    assert result["probabilities"] == {str(c): round(float(p), 2) for c, p in enumerate(expected)}
    assert batch[0] == result
    assert len(batch) == 2


def test_a_changed_measurement_sends_nothing(world: World) -> None:
    good = scoring_policy(world.contract, insecure_simulation=True)
    measurement = world.bundle.measurement
    wrong = measurement[:-2] + ("00" if measurement[-2:] != "00" else "01")
    client = ScoringClient(
        world.url,
        contract=world.contract,
        party="hospital_c",
        signing_key=world.keys["hospital_c"],
        policy=dataclasses.replace(good, allowed_measurements=frozenset({wrong})),
        trusted_roots=[world.launcher.root_certificate],
    )
    with pytest.raises(PolicyViolation) as caught:
        client.score(RECORD)
    assert caught.value.rule == "measurement"
    with pytest.raises(PolicyViolation):
        client.score_batch([RECORD])
    assert client.claims is None
    # The server side: hospital_c has no usage at all (test_usage_reaches_the_ledger...).


def test_model_endpoint_and_expected_model(world: World) -> None:
    with world.client() as client:
        described = client.model()
    assert described["modelId"] == world.model.model_id
    assert described["receipt"] == {"contract_hash": world.contract.hash}
    assert described["contractHash"] == world.contract.hash
    with (
        pytest.raises(ScoringError, match="another model"),
        world.client(expected_model_id="0" * 64) as client,
    ):
        client.score(RECORD)


def test_every_error_class_over_the_wire(world: World) -> None:
    with world.client() as client:
        with pytest.raises(ScoringError, match=r"\(422\).*chestPain"):
            client.score(dict(RECORD, chestPain=9))
        with pytest.raises(ScoringError, match=r"\(422\).*age.*missing|\(422\).*age"):
            client.score({k: v for k, v in RECORD.items() if k != "age"})
        with pytest.raises(ScoringError, match=r"\(413\)"):
            client.score(dict(RECORD, risk="x" * 2_000_000))
    with world.client("auditor") as client, pytest.raises(ScoringError, match=r"\(403\)"):
        client.score(RECORD)
    policy = scoring_policy(world.contract, insecure_simulation=True)
    roots = [world.launcher.root_certificate]
    with attested_httpx_client(world.url, policy, trusted_roots=roots) as raw:
        body = json.dumps(RECORD).encode()
        assert raw.post("/score", content=body).status_code == 401
        outsider = SigningKey.generate()
        headers = sign_request(
            outsider,
            contract_hash=world.contract.hash,
            party="hospital_b",
            method="POST",
            path="/score",
            body=body,
        )
        reply = raw.post("/score", content=body, headers=headers)
        assert reply.status_code == 401
        assert reply.headers["content-type"] == "application/problem+json"
        assert raw.get("/healthz").json() == {"status": "ok"}
        assert "/score" in raw.get("/openapi.json").json()["paths"]


def test_the_quota_is_enforced(world: World) -> None:
    with world.client("hospital_a") as client:
        assert len(client.score_batch([RECORD] * 3)) == 3
        with pytest.raises(ScoringError, match=r"\(429\).*3 records per day"):
            client.score(RECORD)


def test_the_cli_scores_a_csv_file(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = world.workdir / "hospital_b.pem"
    if not key_file.exists():
        world.keys["hospital_b"].save(key_file)
    csv_file = world.workdir / "records.csv"
    header = ",".join(RECORD)
    rows = [",".join(str(v).lower() for v in RECORD.values()), "45,1,false,1,120,,0,160"]
    csv_file.write_text("\n".join([header, *rows]) + "\n")
    common = [
        "score",
        "--party",
        "hospital_b",
        "--url",
        world.url,
        "--contract",
        str(world.workdir / "contract.json"),
        "--key",
        str(key_file),
        "--insecure-simulation",
        "--simulation-root",
        str(world.workdir / "sim" / "simulation-root.pem"),
    ]
    assert main([*common, "--csv", str(csv_file)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert all(line["modelId"] == world.model.model_id for line in lines)
    assert main([*common, "--record", json.dumps(RECORD)]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == lines[0]["score"]
    # Without --insecure-simulation the simulated enclave is refused (exit 31/30).
    strict = [a for a in common if a != "--insecure-simulation"][:-2]
    assert main([*strict, "--record", json.dumps(RECORD)]) in (30, 31)


_value = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    record=st.fixed_dictionaries(
        {}, optional={name: _value | st.integers(0, 300) for name in [*RECORD, "risk", "x"]}
    ),
    batch=st.booleans(),
)
def test_no_record_makes_the_enclave_fail(
    world: World, record: dict[str, Any], batch: bool
) -> None:
    try:
        body = json.dumps({"records": [record]} if batch else record).encode()
    except ValueError:
        return
    path = "/score/batch" if batch else "/score"
    policy = scoring_policy(world.contract, insecure_simulation=True)
    with attested_httpx_client(
        world.url, policy, trusted_roots=[world.launcher.root_certificate]
    ) as raw:
        headers = sign_request(
            world.keys["hospital_b"],
            contract_hash=world.contract.hash,
            party="hospital_b",
            method="POST",
            path=path,
            body=body,
        )
        reply = raw.post(path, content=body, headers=headers)
    assert reply.status_code in (200, 422), reply.text
    assert reply.headers["content-type"].startswith(
        "application/json" if reply.status_code == 200 else "application/problem+json"
    )


def test_usage_reaches_the_ledger_on_shutdown(world: World) -> None:
    assert world.process is not None
    assert world.process.stop() == 0
    with open_store(world.store_url) as store:
        entries = read_entries(store, "scoring")
    verify_ledger(entries, VerifyingKey.from_jwk(world.ledger_key))
    usage = [e.payload for e in entries if e.kind == "scoring.usage"]
    assert usage
    parties: dict[str, dict[str, int]] = {}
    for payload in usage:
        assert payload["contract_hash"] == world.contract.hash
        for party, counts in payload["parties"].items():
            total = parties.setdefault(party, {"records": 0, "over_quota": 0})
            total["records"] += counts["records"]
            total["over_quota"] += counts["over_quota"]
    assert parties["hospital_a"] == {"records": 3, "over_quota": 1}
    # The client that refused the enclave's measurement never got a record through.
    assert "hospital_c" not in parties
    assert "auditor" not in parties
    text = json.dumps(usage)
    assert "chestPain" not in text
