"""The training job end to end: real brokers on loopback, a real enclave process.

Three parties import 300 synthetic records each (encrypted by their own clients), sign a
contract, and run brokers (uvicorn on 127.0.0.1). The operator launches the simulated
enclave with the ``train`` command; recipients open their sealed models and check them
against the signed receipt, which is verified offline, as is the ledger. Contracts that
are not in force, revoked, or an enclave bundle with one changed byte get nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.broker import BrokerSettings, DecisionLog, create_app
from cleanroom.broker.receipts import check_release_receipts
from cleanroom.client import PartyClient
from cleanroom.contract import Contract, ContractRegistry, SigningKey, sign_revocation
from cleanroom.contract.workdir import PartyKeyFiles, generate_party_keys, load_broker_key
from cleanroom.data import generate_sites
from cleanroom.data.medical_record import FEATURE_COLUMN_NAMES
from cleanroom.enclave import (
    JobOutcome,
    dataset_digest,
    load_recipient_private_key,
    open_model,
    open_sealed,
    read_envelope,
    run_contract_job,
    verify_receipt,
)
from cleanroom.errors import (
    BrokerError,
    ConsentMissing,
    DecryptionError,
    LedgerError,
    PolicyViolation,
    TrainingError,
)
from cleanroom.keystores import LocalKeyStore
from cleanroom.ledger import LedgerHead, read_entries, verify_ledger
from cleanroom.ml import FeatureSpec, multiclass_metrics, split_indices
from cleanroom.ml.features import label_indices, model_input
from cleanroom.store import default_url, open_store
from cleanroom.tee import Bundle, SimulatedLauncher
from cleanroom.tee.bundle import default_package_dir

PARTIES = ("hospital_a", "hospital_b", "hospital_c")
RECORDS = 300
FEATURES = list(FEATURE_COLUMN_NAMES)


class Server:
    """A uvicorn server in a thread on 127.0.0.1, on an ephemeral port."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        for _ in range(1000):
            if self._server.started:
                return
            time.sleep(0.01)
        raise RuntimeError("broker did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass
class World:
    workdir: Path
    store_url: str
    launcher: SimulatedLauncher
    bundle: Bundle
    registry: ContractRegistry
    clients: dict[str, PartyClient]
    frames: dict[str, pd.DataFrame]
    brokers: dict[str, Server]
    logs: dict[str, Path]
    keys: dict[str, PartyKeyFiles]
    contracts: dict[str, Contract] = field(default_factory=dict)

    def contract(
        self,
        name: str,
        *,
        min_rows: int = 100,
        parties: tuple[str, ...] = PARTIES,
        measurement: str | None = None,
        broker_keys: dict[str, str] | None = None,
    ) -> Contract:
        pinned = {p: self.keys[p].broker_public_key.read_text() for p in parties}
        pinned.update(broker_keys or {})
        document = {
            "id": f"job-test-{name}",
            "title": f"Job test {name}",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": [
                {
                    "name": p,
                    "signing_key": self.keys[p].signing_public_key.read_text(),
                    "broker_url": self.brokers[p].url,
                    "recipient_key": self.keys[p].recipient_public_key.read_text(),
                    "broker_key": pinned[p],
                }
                for p in parties
            ],
            "datasets": [
                {
                    "party": p,
                    "table": "MedicalRecords",
                    "schema": "medical_record",
                    "min_rows": min_rows,
                }
                for p in parties
            ],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": FEATURES,
                "label": "risk",
                "hyperparameters": {"l2": 1.0, "max_iter": 500},
                "split": {"train_fraction": 0.8, "seed": 0},
                "metrics": ["micro_accuracy", "macro_accuracy", "log_loss", "confusion_matrix"],
            },
            "enclave": {
                "tee_types": ["simulated"],
                "allow_simulation": True,
                "reference_measurements": [measurement or self.bundle.measurement],
            },
            "outputs": {
                "model_recipients": ["hospital_a", "hospital_b"],
                "metrics": [{"party": "hospital_c", "metrics": ["micro_accuracy"]}],
                "collaboration_report": ["hospital_a"],
            },
            "scoring": {"callers": [{"party": "hospital_b", "quota_per_day": 100}]},
        }
        contract = Contract.from_mapping(document)
        self.registry.submit(contract)
        self.contracts[name] = contract
        return contract

    def run(self, contract: Contract, **options: Any) -> JobOutcome:
        """``run_contract_job`` for ``contract`` on this world's launcher and bundle."""
        settings: dict[str, Any] = {"launcher": self.launcher, "bundle": self.bundle}
        settings.update(options)
        return run_contract_job(
            self.workdir,
            self.store_url,
            contract.hash,
            allow_simulation=True,
            timeout=300,
            **settings,
        )

    def sign(self, contract: Contract, parties: tuple[str, ...] = PARTIES) -> None:
        for party in parties:
            self.registry.sign(contract.hash, party, SigningKey.load(self.keys[party].signing_key))

    def released(self, contract: Contract) -> list[dict[str, Any]]:
        out = []
        for path in self.logs.values():
            if path.exists():
                out += [
                    e
                    for e in DecisionLog(path).entries()
                    if e.get("contract") == contract.hash and e["decision"] == "released"
                ]
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("job")
    store_url = default_url(workdir)
    store = open_store(store_url)
    launcher = SimulatedLauncher(allow_simulation=True, workdir=workdir / "sim")
    bundle = launcher.prepare_bundle(workdir / "bundle")
    registry = ContractRegistry(store)
    sites = generate_sites(len(PARTIES), RECORDS, seed=0)
    frames = dict(zip(PARTIES, sites.values(), strict=True))
    clients, brokers, logs, keys = {}, {}, {}, {}
    for party in PARTIES:
        key_store = LocalKeyStore(workdir / "keys" / party)
        client = PartyClient(store, key_store, party=party)
        client.create_keys()
        client.create_dataset()
        client.import_dataframe(frames[party])
        clients[party] = client
        keys[party] = generate_party_keys(workdir, party)
        logs[party] = workdir / "broker" / party / "decisions.jsonl"
        app = create_app(
            BrokerSettings(
                party=party,
                insecure_simulation=True,
                simulation_roots=[launcher.root_certificate],
            ),
            store=store,
            contracts=ContractRegistry(store),
            key_store=key_store,
            decision_log=DecisionLog(logs[party]),
            signing_key=load_broker_key(workdir, party),
        )
        brokers[party] = Server(app)
    world = World(
        workdir, store_url, launcher, bundle, registry, clients, frames, brokers, logs, keys
    )
    try:
        yield world
    finally:
        for server in brokers.values():
            server.stop()
        store.close()


def _secrets(world: World) -> list[bytes]:
    found = []
    for party, client in world.clients.items():
        raw = client.column_encryption_key(f"CEK_{party}").secret_bytes()
        found += [raw, raw.hex().encode(), base64.urlsafe_b64encode(raw).rstrip(b"=")]
        found.append(world.keys[party].recipient_key.read_bytes().split(b"\n")[1])
    return found


_SCAN = """
import pathlib, sys
secrets = [bytes.fromhex(line) for line in sys.stdin.read().split()]
files = sorted(pathlib.Path(sys.argv[1]).glob("cleanroom.db*"))
assert files
print(sum(s in f.read_bytes() for f in files for s in secrets))
"""


def _found_in_store_files(workdir: Path, secrets: list[bytes]) -> int:
    # Another process reads the live SQLite files: closing a descriptor of them here would
    # drop this process's POSIX locks on the database (and let another process delete the WAL).
    result = subprocess.run(
        [sys.executable, "-c", _SCAN, str(workdir)],
        input="\n".join(s.hex() for s in secrets),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def _pooled_test(world: World, spec: FeatureSpec, train_fraction: float, seed: int) -> pd.DataFrame:
    parts = []
    for party in PARTIES:
        frame = world.frames[party].reset_index(drop=True)
        _, test = split_indices(
            frame[spec.label].to_numpy(), test_fraction=1 - train_fraction, seed=seed
        )
        parts.append(frame.iloc[test])
    return pd.concat(parts, ignore_index=True)


@dataclass
class Ran:
    contract: Contract
    outcome: JobOutcome
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def good(world: World) -> Ran:
    contract = world.contract("good")
    world.sign(contract)
    events: list[dict[str, Any]] = []
    outcome = world.run(contract, progress=events.append)
    return Ran(contract, outcome, events)


def test_the_job_trains_seals_and_proves_what_it_did(
    world: World, good: Ran, capfd: pytest.CaptureFixture[str]
) -> None:
    contract, outcome, events = good.contract, good.outcome, good.events
    steps = [e["step"] for e in events]
    assert steps[0] == "contract"
    assert steps[-1] == "done"
    assert "warning" in steps  # the simulated TEE is announced
    assert outcome.keys_released == len(PARTIES)
    assert outcome.rows == {p: RECORDS for p in PARTIES}
    assert outcome.simulated is True
    assert outcome.measurement == world.bundle.measurement

    # The receipt verifies offline against the contract and the simulation root.
    verified = verify_receipt(
        outcome.receipt,
        contract,
        trusted_roots=[world.launcher.root_certificate],
        allow_simulation=True,
    )
    assert verified.claims.simulated
    assert verified.claims.config_id == contract.hash
    assert verified.model_id == outcome.model_id
    body = verified.body
    store = open_store(world.store_url)
    for entry in body["datasets"]:
        digest = dataset_digest(store, entry["party"], entry["table"])
        assert (digest.rows, digest.sha256) == (entry["rows"], entry["ciphertext_sha256"])
        assert entry["train_rows"] + entry["test_rows"] == RECORDS

    # Each model recipient opens its own sealed model; it is the model the receipt names.
    spec = FeatureSpec(**{k: v for k, v in body["spec"].items()})
    test_rows = _pooled_test(world, spec, 0.8, 0)
    models = {}
    for party in contract.outputs.model_recipients:
        opened = open_model(
            outcome.output("model", party), world.keys[party].recipient_key, outcome.receipt
        )
        assert opened.model_id == outcome.model_id
        models[party] = opened.onnx
    assert len(set(models.values())) == 1
    with pytest.raises(DecryptionError):  # another party's key does not open it
        open_sealed(
            read_envelope(outcome.output("model", "hospital_a")),
            load_recipient_private_key(world.keys["hospital_b"].recipient_key),
        )

    # The opened ONNX model scores the held-out rows exactly as the receipt says.
    session = ort.InferenceSession(models["hospital_a"], providers=["CPUExecutionProvider"])
    featurization = body["algorithm"]["featurization"]
    x = model_input(test_rows, spec, featurization)
    feeds = {
        name: x[name].to_numpy().astype(np.float32 if kind == "float" else object).reshape(-1, 1)
        for name, kind in spec.input_kinds(featurization).items()
    }
    _, probabilities = session.run(["label", "probabilities"], feeds)
    metrics = multiclass_metrics(
        label_indices(test_rows, spec),
        np.asarray(probabilities, dtype=np.float64),
        classes=spec.classes,
    )
    assert metrics.rows == body["metrics"]["rows"]
    assert metrics.micro_accuracy == pytest.approx(body["metrics"]["micro_accuracy"], abs=1e-12)
    assert metrics.log_loss == pytest.approx(body["metrics"]["log_loss"], abs=1e-6)
    assert [list(r) for r in metrics.confusion_matrix] == body["metrics"]["confusion_matrix"]

    # Granted metrics and the collaboration report reach their recipients only.
    granted = outcome.open_json("metrics", "hospital_c", world.keys["hospital_c"].recipient_key)
    assert set(granted["pooled_on_all"]) == {"classes", "rows", "micro_accuracy"}
    report = outcome.open_json(
        "collaboration_report", "hospital_a", world.keys["hospital_a"].recipient_key
    )
    assert [p["party"] for p in report["parties"]] == list(PARTIES)
    assert report["pooled_accuracy"] == pytest.approx(body["metrics"]["micro_accuracy"])
    assert {o.kind for o in outcome.outputs} == {"model", "metrics", "collaboration_report"}

    # The ledger verifies against the key the receipt (and its attestation) names.
    entries = read_entries(store, outcome.ledger_id)
    head = LedgerHead.from_json(json.loads((outcome.outputs_dir / "ledger-head.json").read_text()))
    ledger = verify_ledger(entries, verified.public_key, head=head)
    kinds = [e.kind for e in ledger.entries]
    for kind in (
        "enclave.launch",
        "attestation.accepted",
        "keys.released",
        "job.rows",
        "job.trained",
        "model.sealed",
        "receipt.signed",
    ):
        assert kind in kinds
    assert kinds.count("keys.released") == len(PARTIES)
    assert ledger.warnings()  # simulated attestations are flagged
    # Every key release is proven offline by the receipt of the party's own broker, under
    # the broker key the contract pins — and a ledger whose receipts do not match is not.
    assert check_release_receipts(entries, good.contract) == len(PARTIES)
    with pytest.raises(LedgerError, match="another contract"):
        check_release_receipts(entries, world.contract("receipts-other"))
    forged = []
    for entry in entries:
        if entry.kind == "keys.released" and entry.payload["party"] == "hospital_b":
            receipt = entry.payload["receipts"][0]
            head_and_body, signature = receipt.rsplit(".", 1)
            swapped = ("B" if signature[0] != "B" else "C") + signature[1:]
            payload = {**entry.payload, "receipts": [f"{head_and_body}.{swapped}"]}
            entry = dataclasses.replace(entry, payload=payload)
        forged.append(entry)
    with pytest.raises(LedgerError, match=r"\(hospital_b\): the release receipt does not verify"):
        check_release_receipts(forged, good.contract)
    store.close()

    # The operator saw only sealed outputs, receipts, counts: no key, no recipient key.
    captured = capfd.readouterr()
    haystacks = [json.dumps(events).encode(), captured.out.encode(), captured.err.encode()]
    haystacks += [p.read_bytes() for p in outcome.outputs_dir.iterdir()]
    for secret in _secrets(world):
        for haystack in haystacks:
            assert secret not in haystack
    assert not _found_in_store_files(world.workdir, _secrets(world))
    assert sorted(p.name for p in outcome.outputs_dir.iterdir()) == sorted(
        [o.file for o in outcome.outputs] + ["receipt.json", "ledger.jsonl", "ledger-head.json"]
    )


def test_a_contract_not_signed_by_all_releases_nothing(world: World) -> None:
    contract = world.contract("unsigned")
    world.sign(contract, PARTIES[:-1])
    with pytest.raises(ConsentMissing, match="hospital_c"):
        world.run(contract)
    assert world.released(contract) == []
    assert not (world.workdir / "outputs" / contract.hash[:16] / "receipt.json").exists()


def test_a_revoked_contract_releases_nothing(world: World) -> None:
    contract = world.contract("revoked")
    world.sign(contract)
    party = "hospital_b"
    revocation = sign_revocation(contract, party, SigningKey.load(world.keys[party].signing_key))
    world.registry.revoke(contract.hash, party, revocation)
    with pytest.raises(ConsentMissing, match="revoked by hospital_b"):
        world.run(contract)
    assert world.released(contract) == []


def test_one_changed_byte_of_enclave_code_gets_no_key(world: World, tmp_path: Path) -> None:
    contract = world.contract("tampered")
    world.sign(contract)
    package = tmp_path / "cleanroom"
    shutil.copytree(default_package_dir(), package, ignore=shutil.ignore_patterns("__pycache__"))
    target = package / "enclave" / "job.py"
    target.write_bytes(target.read_bytes() + b"\n")
    tampered = SimulatedLauncher(
        allow_simulation=True, workdir=world.workdir / "sim", package_dir=package
    )
    with pytest.raises(PolicyViolation) as refused:
        world.run(contract, launcher=tampered, bundle=None)
    assert refused.value.rule == "measurement"
    assert world.released(contract) == []


def test_an_enclave_launched_for_another_contract_refuses_to_run_this_one(
    world: World, good: Ran, tmp_path: Path
) -> None:
    other = world.contract("other")
    world.sign(other)
    released = len(world.released(good.contract))
    # The operator launches the TEE for `other` (its config id) but asks for `good`.
    command = ["train", "--contract", good.contract.hash, "--store", world.store_url]
    command += ["--outputs", str(tmp_path)]
    with world.launcher.launch(
        command, config_id=bytes.fromhex(other.hash), bundle=world.bundle
    ) as enclave:
        event = enclave.wait_event("job", timeout=300)
        while event["step"] not in ("failed", "done"):
            event = enclave.wait_event("job", timeout=300)
    assert event["step"] == "failed"
    assert event["kind"] == "ConfigurationError"
    assert "another contract" in event["message"]
    assert len(world.released(good.contract)) == released
    assert world.released(other) == []
    assert not (tmp_path / "receipt.json").exists()


def test_a_broker_signing_under_a_key_the_contract_does_not_pin_is_refused(
    world: World, tmp_path: Path
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = stranger.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    contract = world.contract("unpinned-broker", broker_keys={"hospital_b": pem})
    world.sign(contract)
    with pytest.raises(BrokerError, match="receipt does not verify"):
        world.run(contract, outputs_dir=tmp_path)
    assert not (tmp_path / "receipt.json").exists()


def test_a_party_below_min_rows_stops_the_job_before_any_key(world: World) -> None:
    contract = world.contract("too-few", min_rows=RECORDS + 1)
    world.sign(contract)
    with pytest.raises(TrainingError, match=r"hospital_a.*300 rows"):
        world.run(contract)
    assert world.released(contract) == []


def test_run_contract_job_refuses_without_allow_simulation(world: World) -> None:
    from cleanroom.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="allow_simulation"):
        run_contract_job(world.workdir, world.store_url, "00" * 32)


def test_cli_run_and_model_open_give_the_same_model_again(
    world: World, good: Ran, capsys: pytest.CaptureFixture[str]
) -> None:
    from cleanroom.cli import main

    first = good.outcome.receipt
    # `cleanroom run` measures the package as it is now (other work may have changed it
    # since the fixture's bundle): the parties approve that measurement.
    measured = world.launcher.prepare_bundle(world.workdir / "cli-bundle").measurement
    contract = world.contract("cli", measurement=measured)
    world.sign(contract)
    out = world.workdir / "cli-outputs"
    common = ["--workdir", str(world.workdir)]
    assert main(["run", "--contract", contract.hash, "--outputs", str(out), *common]) == 2
    status = main(
        [
            "run",
            "--contract",
            contract.hash,
            "--outputs",
            str(out),
            "--insecure-simulation",
            *common,
        ]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "[enclave] keys-released party=hospital_a" in printed.out
    assert "SIMULATED" in printed.out
    second = json.loads((out / "receipt.json").read_text())
    _same_training(first, second)

    model_file = world.workdir / "opened.onnx"
    opening = ["model", "open", "--party", "hospital_b", "--outputs", str(out), *common]
    # Without --insecure-simulation the simulation root is not trusted (AttestationError).
    assert main([*opening, "--out", str(model_file)]) == 30
    assert not model_file.exists()
    assert main([*opening, "--out", str(model_file), "--insecure-simulation"]) == 0
    assert model_file.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == second["body"]["model"]["sha256"]
    # A party that receives no model has nothing to open.
    assert main(["model", "open", "--party", "hospital_c", "--outputs", str(out), *common]) != 0

    # Anyone with the receipt and the contract checks the ledger and every key release.
    contract_file = world.workdir / "cli-contract.json"
    contract_file.write_bytes(contract.canonical_bytes())
    capsys.readouterr()
    verifying = ["ledger", "verify", "--ledger-id", second["body"]["ledger_id"]]
    verifying += ["--public-key", str(out / "receipt.json"), *common]
    assert main([*verifying, "--contract", str(contract_file)]) == 0
    assert f"{len(PARTIES)} key-release receipts verify" in capsys.readouterr().out
    contract_file.write_bytes(good.contract.canonical_bytes())
    assert main([*verifying, "--contract", str(contract_file)]) == 80
    assert "another contract" in capsys.readouterr().err


def test_train_then_serve_scores_with_the_model_it_just_trained(world: World, good: Ran) -> None:
    from cleanroom.client.scoring import ScoringClient

    contract = good.contract
    outcome = world.run(contract, outputs_dir=world.workdir / "served-outputs", serve=True)
    assert outcome.enclave is not None
    assert outcome.scoring_url is not None
    try:
        _same_training(good.outcome.receipt, outcome.receipt)
        record = {k: _plain(v) for k, v in world.frames["hospital_b"].iloc[0][FEATURES].items()}
        with ScoringClient(
            outcome.scoring_url,
            contract=contract,
            party="hospital_b",
            signing_key=SigningKey.load(world.keys["hospital_b"].signing_key),
            trusted_roots=[world.launcher.root_certificate],
            insecure_simulation=True,
            expected_model_id=outcome.model_id,
        ) as client:
            scored = client.score(record)
    finally:
        outcome.enclave.stop()
    assert scored["modelId"] == outcome.model_id
    # The served model is the sealed one: same class as the recipient's ONNX copy.
    onnx = open_model(
        outcome.output("model", "hospital_b"),
        world.keys["hospital_b"].recipient_key,
        outcome.receipt,
    ).onnx
    spec = FeatureSpec(**outcome.receipt["body"]["spec"])
    x = model_input(world.frames["hospital_b"].iloc[:1], spec)
    feeds = {
        name: x[name].to_numpy().astype(np.float32 if kind == "float" else object).reshape(-1, 1)
        for name, kind in spec.input_kinds().items()
    }
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    label, _ = session.run(["label", "probabilities"], feeds)
    assert int(scored["predictedClass"]) == int(np.asarray(label).reshape(-1)[0])


def _plain(value: Any) -> Any:
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    return value


def _same_training(first: Any, second: Any) -> None:
    """Two jobs (two enclave processes) over the same ciphertext and settings: same
    inputs, the same model bytes and the same metrics."""
    a, b = first["body"], second["body"]
    assert a["job_id"] != b["job_id"]
    assert a["datasets"] == b["datasets"]
    assert a["algorithm"] == b["algorithm"]
    assert b["model"]["sha256"] == a["model"]["sha256"]
    assert b["metrics"] == a["metrics"]
