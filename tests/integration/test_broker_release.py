"""End to end on loopback: a verifier and two parties' brokers (real uvicorn servers), an
enclave attesting with simulated-TEE evidence signed by the launcher, a real enclave
process presenting an EAR token. Keys are released under a contract in force and refused —
with nothing leaked — otherwise.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from joserfc.jwk import ECKey

from cleanroom.attestation import AttestationPolicy, VerifierSettings, report_data_for
from cleanroom.attestation import create_app as create_verifier
from cleanroom.broker import (
    COOKIE,
    ENCLAVE_COMMAND,
    RECEIPT_HEADER,
    BrokerSettings,
    DecisionLog,
    KbsClient,
    add_veto,
    create_app,
    fetch_cek,
    verify_decision_log,
)
from cleanroom.broker.jwe import tee_pubkey_of
from cleanroom.client import PartyClient, Workspace
from cleanroom.contract import Contract, ContractRegistry, SigningKey, sign_revocation
from cleanroom.errors import KeyWrapError, PolicyViolation, StorageError
from cleanroom.store import medical_record_schema
from cleanroom.tee import Bundle, Evidence, SimulatedLauncher, measure_bundle

A, B = "hospital_a", "hospital_b"
VERIFIER_ISSUER = "test-verifier"


class Clock:
    """The brokers' clock: real time plus an offset the expiry tests move."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


class Server:
    """A uvicorn server in a thread on 127.0.0.1, on an ephemeral port."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return
            time.sleep(0.01)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


class LauncherPlatform:
    """The enclave's platform, signing through the launcher exactly as its report channel
    does (``EnclaveProcess._serve``): the launcher supplies measurement and config id."""

    def __init__(self, launcher: SimulatedLauncher, measurement: str, config_id: str) -> None:
        self._launcher = launcher
        self._measurement = measurement
        self._config_id = bytes.fromhex(config_id)

    @property
    def tee(self) -> str:
        return "simulated"

    def evidence(self, report_data: bytes) -> Evidence:
        return self._launcher.sign_report(
            measurement=self._measurement, config_id=self._config_id, report_data=report_data
        )


@dataclasses.dataclass
class World:
    workdir: Path
    launcher: SimulatedLauncher
    measurement: str
    changed_measurement: str
    bundle_path: Path
    registry: ContractRegistry
    keys: dict[str, SigningKey]
    clients: dict[str, PartyClient]
    contract: Contract  # in force, names both parties
    contracts: dict[str, Contract]
    verifier: Server
    brokers: dict[str, Server]  # A, B, and "prod" (A's keys, no simulation)
    clock: Clock
    logs: dict[str, Path]

    def platform(
        self, contract: Contract | str, *, measurement: str | None = None
    ) -> LauncherPlatform:
        h = contract if isinstance(contract, str) else contract.hash
        return LauncherPlatform(self.launcher, measurement or self.measurement, h)

    def secrets(self) -> list[str]:
        """Every form of every CEK that must never appear in a refusal or a log."""
        found = []
        for party, client in self.clients.items():
            for name in (f"CEK_{party}", "CEK_spare", "CEK_plain"):
                try:
                    raw = client.column_encryption_key(name).secret_bytes()
                except (StorageError, KeyWrapError):  # that key is the other party's
                    raw = b""
                if not raw:
                    continue
                found += [
                    raw.hex(),
                    raw.hex().upper(),
                    base64.b64encode(raw).decode(),
                    base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
                ]
        return found


def _document(
    world_keys: dict[str, SigningKey],
    measurement: str,
    *,
    id_: str,
    parties: tuple[str, ...],
    datasets: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": id_,
        "title": "Pooled heart disease model",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "expires": "2099-01-01T00:00:00Z",
        "parties": [
            {
                "name": p,
                "signing_key": world_keys[p].public_key.to_pem(),
                "broker_url": f"http://127.0.0.1:{8701 + i}",
                "recipient_key": _recipient_jwk(),
            }
            for i, p in enumerate(parties)
        ],
        "datasets": datasets,
        "algorithm": {
            "name": "multinomial_logistic_regression",
            "features": ["age", "sex"],
            "label": "num",
            "split": {"train_fraction": 0.8, "seed": 0},
            "metrics": ["micro_accuracy"],
        },
        "enclave": {
            "tee_types": ["simulated"],
            "reference_measurements": [measurement],
            "allow_simulation": True,
        },
    }


def _recipient_jwk() -> dict[str, str]:
    key = ECKey.generate_key("P-256", private=True).as_dict(private=False)
    return {k: str(v) for k, v in key.items() if k in ("kty", "crv", "x", "y")}


def _ds(party: str, table: str = "MedicalRecords") -> dict[str, Any]:
    return {"party": party, "table": table, "schema": "medical_record", "min_rows": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("broker-world")
    workspace = Workspace(workdir=root / "work")
    clients = {p: workspace.client(p, create_key_store=True) for p in (A, B)}
    for client in clients.values():
        client.create_keys()
        client.create_dataset()
    # A's spare key (enclave-enabled, in no dataset) and a key whose CMK is not
    # enclave-enabled, used by a second dataset.
    clients[A].create_keys(cmk_name="CMK_spare", cek_name="CEK_spare")
    clients[A].create_keys(
        cmk_name="CMK_plain", cek_name="CEK_plain", allow_enclave_computations=False
    )
    lab = dataclasses.replace(medical_record_schema(), table="lab_results")
    clients[A].create_dataset(lab.with_default_cek("CEK_plain"))

    launcher = SimulatedLauncher(allow_simulation=True, workdir=root / "sim")
    bundle = launcher.prepare_bundle(root / "bundle")
    # The same code with one byte changed, measured by a launcher with the same root.
    changed_src = root / "changed-src" / "cleanroom"
    shutil.copytree(bundle.path / "cleanroom", changed_src)
    target = changed_src / "broker" / "policy.py"
    target.chmod(0o600)
    target.write_bytes(target.read_bytes() + b" ")
    changed = SimulatedLauncher(
        allow_simulation=True, workdir=root / "sim", package_dir=changed_src
    ).prepare_bundle(root / "changed-bundle")
    assert changed.measurement != bundle.measurement

    store = workspace.open_store()
    registry = ContractRegistry(store)
    keys = {p: SigningKey.generate("ed25519") for p in (A, B)}
    m = bundle.measurement
    documents = {
        "main": _document(
            keys, m, id_="main", parties=(A, B), datasets=[_ds(A), _ds(A, "lab_results"), _ds(B)]
        ),
        "unsigned": _document(keys, m, id_="unsigned", parties=(A, B), datasets=[_ds(A), _ds(B)]),
        "revocable": _document(keys, m, id_="revocable", parties=(A, B), datasets=[_ds(A), _ds(B)]),
        "only_b": _document(keys, m, id_="only-b", parties=(B,), datasets=[_ds(B)]),
        "vetoable": _document(keys, m, id_="vetoable", parties=(A, B), datasets=[_ds(A), _ds(B)]),
    }
    contracts = {name: Contract.from_mapping(doc) for name, doc in documents.items()}
    for name, contract in contracts.items():
        registry.submit(contract)
        for party in contract.party_names:
            if name == "unsigned" and party == B:
                continue
            registry.sign(contract.hash, party, keys[party])

    verifier_policy = AttestationPolicy(allowed_measurements=frozenset({m}), allow_simulation=True)
    verifier_app = create_verifier(
        VerifierSettings(
            issuer=VERIFIER_ISSUER,
            policy=verifier_policy,
            trusted_roots=[launcher.root_certificate],
        )
    )
    verifier = Server(verifier_app)
    jwks = httpx.get(f"{verifier.url}/.well-known/jwks.json").json()

    clock = Clock()
    logs = {}
    brokers = {}
    for name, party, insecure in ((A, A, True), (B, B, True), ("prod", A, False)):
        logs[name] = root / "logs" / f"{name}.jsonl"
        settings = BrokerSettings(
            party=party,
            insecure_simulation=insecure,
            simulation_roots=[launcher.root_certificate] if insecure else (),
            verifier_jwks=jwks,
            verifier_issuer=VERIFIER_ISSUER,
            veto_file=root / "vetoes" / f"{name}.txt",
        )
        app = create_app(
            settings,
            store=store,
            contracts=registry,
            key_store=workspace.key_store(party),
            decision_log=DecisionLog(logs[name]),
            _now=clock,
        )
        brokers[name] = Server(app)
    world = World(
        workdir=root,
        launcher=launcher,
        measurement=m,
        changed_measurement=changed.measurement,
        bundle_path=bundle.path,
        registry=registry,
        keys=keys,
        clients=clients,
        contract=contracts["main"],
        contracts=contracts,
        verifier=verifier,
        brokers=brokers,
        clock=clock,
        logs=logs,
    )
    yield world
    for server in (*brokers.values(), verifier):
        server.stop()
    store.close()


@pytest.fixture
def http(world: World) -> Iterator[Callable[[str], httpx.Client]]:
    opened: list[httpx.Client] = []

    def make(name: str) -> httpx.Client:
        client = httpx.Client(base_url=world.brokers[name].url, timeout=30.0)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def _assert_nothing_leaked(world: World, *texts: str) -> None:
    secrets = world.secrets()
    assert len(set(secrets)) == 16  # four keys, four spellings each: the scan is real
    for secret in secrets:
        for text in texts:
            assert secret not in text
        for path in world.logs.values():
            if path.exists():
                assert secret not in path.read_text()


def _refusal(reply: httpx.Response, status: int, rule: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = reply.json()
    assert problem["type"].startswith("https://github.com/confidential-containers/kbs/errors/")
    assert problem["status"] == status
    assert problem["rule"] == rule
    assert RECEIPT_HEADER.lower() not in {k.lower() for k in reply.headers}
    return problem


def _attest(
    http: httpx.Client, platform: Any, key: ECKey | None = None
) -> tuple[httpx.Response, dict[str, Any]]:
    """auth + attest by hand; returns the attest reply and the request body sent."""
    key = key or ECKey.generate_key("P-256", private=True)
    nonce = http.post(
        "/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated", "extra-params": {}}
    ).json()["nonce"]
    public = tee_pubkey_of(key)
    evidence = platform.evidence(report_data_for(nonce, public))
    body = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": public},
        "tee-evidence": evidence.to_json(),
    }
    return http.post("/kbs/v0/attest", json=body), body


# -- released -------------------------------------------------------------------------------


def test_each_broker_releases_its_key_under_the_contract_in_force(world: World, http: Any) -> None:
    platform = world.platform(world.contract)
    for party in (A, B):
        expected = world.clients[party].column_encryption_key(f"CEK_{party}")
        with KbsClient(http(party), platform=platform) as kbs:
            release = kbs.cek(party, f"CEK_{party}")
            assert release.cek == expected
            jwks = http(party).get("/.well-known/jwks.json").json()
            claims = release.receipt_claims(jwks)
            assert claims["party"] == party
            assert claims["contract"] == world.contract.hash
            assert claims["measurement"] == world.measurement
            assert claims["simulated"] is True
            assert claims["cek"] == f"CEK_{party}"
    entries = DecisionLog(world.logs[A]).entries()
    released = [e for e in entries if e["decision"] == "released"]
    assert released
    assert released[-1]["resource"] == f"{A}/cek/CEK_{A}"
    assert released[-1]["contract"] == world.contract.hash
    assert released[-1]["insecure_simulation"]
    assert verify_decision_log(world.logs[A]) == len(entries)


def test_fetch_cek_by_url_and_bearer_token(world: World, http: Any) -> None:
    platform = world.platform(world.contract)
    cek = fetch_cek(world.brokers[A].url, platform=platform, party=A, cek_name=f"CEK_{A}")
    assert cek == world.clients[A].column_encryption_key(f"CEK_{A}")
    # Passport style: the token alone (no cookie) works for the key it was sealed to.
    key = ECKey.generate_key("P-256", private=True)
    reply, _ = _attest(http(A), platform, key)
    token = reply.json()["token"]
    with httpx.Client(base_url=world.brokers[A].url) as fresh:
        sealed = fresh.get(
            f"/kbs/v0/resource/{A}/cek/CEK_{A}", headers={"Authorization": f"Bearer {token}"}
        )
    assert sealed.status_code == 200
    from cleanroom.broker import unseal

    assert (
        unseal(sealed.json(), key)
        == world.clients[A].column_encryption_key(f"CEK_{A}").secret_bytes()
    )
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with httpx.Client(base_url=world.brokers[A].url) as fresh:
        refused = fresh.get(
            f"/kbs/v0/resource/{A}/cek/CEK_{A}", headers={"Authorization": f"Bearer {forged}"}
        )
    _refusal(refused, 401, "token")


def _copy_bundle(world: World) -> Bundle:
    # The launcher deletes a bundle when its enclave stops: run a copy of the measured one
    # (the working tree may change meanwhile, so it is not rebuilt from the sources).
    path = world.workdir / f"bundle-{time.monotonic_ns()}"
    shutil.copytree(world.bundle_path, path)
    bundle = Bundle(path=path, measurement=measure_bundle(path))
    assert bundle.measurement == world.measurement
    return bundle


def test_a_real_enclave_process_attests_with_an_ear_token(world: World, http: Any) -> None:
    with world.launcher.launch(
        ["attest", "--verifier-url", world.verifier.url],
        config_id=bytes.fromhex(world.contract.hash),
        bundle=_copy_bundle(world),
    ) as enclave:
        event = enclave.wait_event("token", timeout=60)
    broker = http(A)
    nonce = broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"}).json()[
        "nonce"
    ]
    body = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": event["tee-pubkey"]},
        "tee-evidence": {"ear": event["token"]},
    }
    attest = broker.post("/kbs/v0/attest", json=body)
    assert attest.status_code == 200, attest.text
    sealed = broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}")
    assert sealed.status_code == 200
    header = json.loads(base64.urlsafe_b64decode(sealed.json()["protected"] + "=="))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["enc"] == "A256GCM"
    _assert_nothing_leaked(world, sealed.text, str(sealed.headers))
    # The same token under a production broker: a simulated TEE is never "affirming".
    prod = http("prod")
    nonce = prod.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"}).json()["nonce"]
    body["runtime-data"]["nonce"] = nonce
    _refusal(prod.post("/kbs/v0/attest", json=body), 403, "ear-status")
    # An EAR token for another key is refused.
    nonce = broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"}).json()[
        "nonce"
    ]
    other = tee_pubkey_of(ECKey.generate_key("P-256", private=True))
    body = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": other},
        "tee-evidence": {"ear": event["token"]},
    }
    _refusal(broker.post("/kbs/v0/attest", json=body), 401, "evidence")


# -- refused --------------------------------------------------------------------------------


def _refused_fetch(
    world: World, http: httpx.Client, platform: Any, party: str, cek: str, status: int, rule: str
) -> None:
    with pytest.raises(PolicyViolation) as refused:
        fetch_cek(http, platform=platform, party=party, cek_name=cek)
    assert refused.value.rule == rule
    _assert_nothing_leaked(world, str(refused.value))


def test_changed_enclave_byte_is_refused(world: World, http: Any) -> None:
    platform = world.platform(world.contract, measurement=world.changed_measurement)
    reply, _ = _attest(http(A), platform)
    _refusal(reply, 403, "measurement")
    _assert_nothing_leaked(world, reply.text)


@pytest.mark.parametrize(
    ("contract", "rule"),
    [("unsigned", "in-force"), ("only_b", "party"), ("unknown", "contract")],
)
def test_other_unsigned_or_unknown_contracts_are_refused(
    world: World, http: Any, contract: str, rule: str
) -> None:
    h = "ab" * 32 if contract == "unknown" else world.contracts[contract].hash
    reply, _ = _attest(http(A), world.platform(h))
    problem = _refusal(reply, 403, rule)
    _assert_nothing_leaked(world, reply.text, json.dumps(problem))


def test_replayed_nonce_and_evidence_are_refused(world: World, http: Any) -> None:
    broker = http(A)
    reply, body = _attest(broker, world.platform(world.contract))
    assert reply.status_code == 200
    # Same session: its nonce is used up.
    _refusal(broker.post("/kbs/v0/attest", json=body), 401, "nonce")
    # New session: the old evidence carries another session's nonce.
    broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"})
    _refusal(broker.post("/kbs/v0/attest", json=body), 401, "nonce")
    # Right nonce, but evidence bound to the old one.
    nonce = broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"}).json()[
        "nonce"
    ]
    replay = {**body, "runtime-data": {**body["runtime-data"], "nonce": nonce}}
    _refusal(broker.post("/kbs/v0/attest", json=replay), 401, "report-data")
    # No session at all.
    with httpx.Client(base_url=world.brokers[A].url) as fresh:
        _refusal(fresh.post("/kbs/v0/attest", json=body), 401, "session")
        _refusal(fresh.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}"), 401, "session")


def test_expired_session_and_token_are_refused(world: World, http: Any) -> None:
    broker = http(A)
    reply, _ = _attest(broker, world.platform(world.contract))
    token = reply.json()["token"]
    assert broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}").status_code == 200
    world.clock.offset = dt.timedelta(minutes=6)
    try:
        _refusal(broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}"), 401, "session")
        with httpx.Client(base_url=world.brokers[A].url) as fresh:
            expired = fresh.get(
                f"/kbs/v0/resource/{A}/cek/CEK_{A}", headers={"Authorization": f"Bearer {token}"}
            )
        _refusal(expired, 401, "token")
        # A nonce issued before the jump is stale at attest time too.
    finally:
        world.clock.offset = dt.timedelta(0)
    broker2 = http(A)
    nonce_reply = broker2.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"})
    assert nonce_reply.status_code == 200
    world.clock.offset = dt.timedelta(minutes=6)
    try:
        key = ECKey.generate_key("P-256", private=True)
        public = tee_pubkey_of(key)
        nonce = nonce_reply.json()["nonce"]
        evidence = world.platform(world.contract).evidence(report_data_for(nonce, public))
        body = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": public},
            "tee-evidence": evidence.to_json(),
        }
        _refusal(broker2.post("/kbs/v0/attest", json=body), 401, "session")
    finally:
        world.clock.offset = dt.timedelta(0)


def test_debug_evidence_under_a_production_broker_is_refused(world: World, http: Any) -> None:
    reply, _ = _attest(http("prod"), world.platform(world.contract))
    # A production broker trusts no simulation root: the evidence does not even verify.
    _refusal(reply, 401, "evidence")
    _assert_nothing_leaked(world, reply.text)
    entries = DecisionLog(world.logs["prod"]).entries()
    assert entries[-1]["decision"] == "refused"
    assert not entries[-1]["insecure_simulation"]


def test_resources_outside_the_partys_contract_datasets_are_refused(
    world: World, http: Any
) -> None:
    broker = http(A)
    reply, _ = _attest(broker, world.platform(world.contract))
    assert reply.status_code == 200
    texts = []
    for path, rule in (
        (f"{B}/cek/CEK_{B}", "resource"),  # another party's key
        (f"{A}/cek/CEK_{B}", "resource"),  # another party's key under this repository
        (f"{A}/cek/CEK_spare", "resource"),  # this party's key, but in no contract dataset
        (f"{A}/secret/CEK_{A}", "resource"),  # not a key type
        (f"{A}/cek/CEK_plain", "cmk"),  # its CMK is not enclave-enabled
    ):
        refused = broker.get(f"/kbs/v0/resource/{path}")
        _refusal(refused, 403, rule)
        texts.append(refused.text)
    _assert_nothing_leaked(world, *texts)
    assert broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}").status_code == 200


def test_revocation_takes_effect_on_the_next_request(world: World, http: Any) -> None:
    contract = world.contracts["revocable"]
    broker = http(A)
    reply, _ = _attest(broker, world.platform(contract))
    assert reply.status_code == 200
    token = reply.json()["token"]
    assert broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}").status_code == 200
    # hospital_b vetoes; hospital_a's broker refuses on the very next request.
    world.registry.revoke(contract.hash, B, sign_revocation(contract, B, world.keys[B]))
    refused = broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}")
    problem = _refusal(refused, 403, "in-force")
    assert "revoked by hospital_b" in problem["detail"]
    with httpx.Client(base_url=world.brokers[A].url) as fresh:
        bearer = fresh.get(
            f"/kbs/v0/resource/{A}/cek/CEK_{A}", headers={"Authorization": f"Bearer {token}"}
        )
    _refusal(bearer, 403, "in-force")
    reply, _ = _attest(http(A), world.platform(contract))
    _refusal(reply, 403, "in-force")
    _assert_nothing_leaked(world, refused.text, bearer.text, reply.text)
    entries = DecisionLog(world.logs[A]).entries()
    assert entries[-1]["reason"] == "in-force"
    assert entries[-1]["contract"] == contract.hash


def test_the_partys_own_veto_takes_effect_on_the_next_request(world: World, http: Any) -> None:
    contract = world.contracts["vetoable"]
    broker = http(A)
    reply, _ = _attest(broker, world.platform(contract))
    assert reply.status_code == 200
    assert broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}").status_code == 200
    # The registry still says "in force" (the operator may have deleted a revocation).
    assert world.registry.status(contract.hash).in_force
    add_veto(world.workdir / "vetoes" / f"{A}.txt", contract.hash)
    problem = _refusal(broker.get(f"/kbs/v0/resource/{A}/cek/CEK_{A}"), 403, "in-force")
    assert "vetoed" in problem["detail"]
    # Only A's broker: B still releases its own key under the contract.
    fetched = fetch_cek(http(B), platform=world.platform(contract), party=B, cek_name=f"CEK_{B}")
    assert fetched == world.clients[B].column_encryption_key(f"CEK_{B}")


def test_enclave_command_emits_receipts_never_keys(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    add_arguments, run = ENCLAVE_COMMAND
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--broker-url", world.brokers[A].url, "--party", A, "--cek", f"CEK_{A}"]
    )
    assert run(world.platform(world.contract), args) == 0
    out = capsys.readouterr().out
    event = json.loads(out.strip().splitlines()[-1])
    assert event["event"] == "key-released"
    assert event["resource"] == f"{A}/cek/CEK_{A}"
    assert event["receipt"].count(".") == 2
    _assert_nothing_leaked(world, out)


def test_malformed_requests(world: World, http: Any) -> None:
    broker = http(A)
    assert (
        broker.post("/kbs/v0/auth", json={"version": "9.0.0", "tee": "simulated"}).status_code
        == 400
    )
    assert (
        broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "az-snp-vtpm"}).status_code
        == 400
    )
    auth = broker.post("/kbs/v0/auth", json={"version": "0.1.1", "tee": "simulated"})
    cookie = auth.headers["set-cookie"]
    assert COOKIE in cookie
    assert "HttpOnly" in cookie
    assert "Path=/kbs" in cookie
    assert broker.post("/kbs/v0/attest", content=b"[1]").status_code == 400
    assert broker.post("/kbs/v0/attest", content=b"x" * (1024 * 1024 + 1)).status_code == 413
    # Bodies that are not JSON objects leave the nonce alone; a bad runtime-data uses it up.
    assert broker.post("/kbs/v0/attest", json={"runtime-data": {}}).status_code == 400
    _refusal(broker.post("/kbs/v0/attest", json={"runtime-data": {}}), 401, "nonce")


def test_every_log_line_is_free_of_secrets(world: World) -> None:
    for path in world.logs.values():
        if path.exists():
            verify_decision_log(path)
    _assert_nothing_leaked(world)


def test_simulated_acceptance_warns(
    world: World, http: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cleanroom.broker"):
        fetch_cek(http(A), platform=world.platform(world.contract), party=A, cek_name=f"CEK_{A}")
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    _assert_nothing_leaked(world, caplog.text)
