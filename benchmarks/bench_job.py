"""The whole enclave job, end to end, on loopback: where the time goes.

    .venv/bin/python benchmarks/bench_job.py [--parties 3] [--records 300 10000] [--write]

For each size: three (``--parties``) hospitals import ``records`` synthetic MedicalRecords
each (encrypted by their own clients into a fresh SQLite store), sign a contract, run
brokers (uvicorn threads on 127.0.0.1); then ``run_contract_job`` launches the simulated
enclave and the script timestamps every progress event it streams. Reported per size:
enclave start (launch to the contract check), keys (attestation and release, all brokers),
data (stream, digest, decrypt, validate), training + evaluation + collaboration report +
ONNX export and parity, sealing + receipt + ledger, and the total. With ``--write`` the
table replaces the "Enclave job" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import uvicorn

from _report import machine, write_section
from cleanroom.broker import BrokerSettings, DecisionLog, create_app
from cleanroom.client import PartyClient
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.contract.workdir import generate_party_keys
from cleanroom.data import generate_sites
from cleanroom.enclave import run_contract_job
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import default_url, open_store
from cleanroom.tee import SimulatedLauncher

FEATURES = [
    "age",
    "sex",
    "smoker",
    "chestPain",
    "bloodPressure",
    "serumCholestoral",
    "fastingBloodSugar",
    "maxHeartRate",
]


def _serve(app: Any) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def run_once(parties: int, records: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-job-"))
    store_url = default_url(work)
    store = open_store(store_url)
    launcher = SimulatedLauncher(allow_simulation=True, workdir=work / "sim")
    bundle = launcher.prepare_bundle(work / "bundle")
    names = [f"hospital_{chr(ord('a') + i)}" for i in range(parties)]
    sites = dict(zip(names, generate_sites(parties, records, seed=0).values(), strict=True))
    entries, servers = [], []
    for name in names:
        key_store = LocalKeyStore(work / "keys" / name)
        client = PartyClient(store, key_store, party=name)
        client.create_keys()
        client.create_dataset()
        client.import_dataframe(sites[name])
        files = generate_party_keys(work, name)
        app = create_app(
            BrokerSettings(
                party=name, insecure_simulation=True, simulation_roots=[launcher.root_certificate]
            ),
            store=store,
            contracts=ContractRegistry(store),
            key_store=key_store,
            decision_log=DecisionLog(work / "broker" / name / "decisions.jsonl"),
        )
        url, server = _serve(app)
        servers.append(server)
        entries.append(
            {
                "name": name,
                "signing_key": files.signing_public_key.read_text(),
                "broker_url": url,
                "recipient_key": files.recipient_public_key.read_text(),
            }
        )
    contract = Contract.from_mapping(
        {
            "id": "bench",
            "title": "bench",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": entries,
            "datasets": [
                {"party": n, "table": "MedicalRecords", "schema": "medical_record", "min_rows": 1}
                for n in names
            ],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": FEATURES,
                "label": "risk",
                "split": {"train_fraction": 0.8, "seed": 0},
                "metrics": ["micro_accuracy", "macro_accuracy", "log_loss"],
            },
            "enclave": {
                "tee_types": ["simulated"],
                "allow_simulation": True,
                "reference_measurements": [bundle.measurement],
            },
            "outputs": {"model_recipients": names, "collaboration_report": names},
        }
    )
    registry = ContractRegistry(store)
    registry.submit(contract)
    for name in names:
        registry.sign(
            contract.hash, name, SigningKey.load(work / "parties" / name / "signing-key.pem")
        )
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    start = time.perf_counter()

    def progress(event: dict[str, Any]) -> None:
        now = time.perf_counter() - start
        first.setdefault(str(event["step"]), now)
        last[str(event["step"])] = now

    run_contract_job(
        work,
        store_url,
        contract.hash,
        allow_simulation=True,
        launcher=launcher,
        bundle=bundle,
        progress=progress,
        timeout=3600,
    )
    total = time.perf_counter() - start
    for server in servers:
        server.should_exit = True
    store.close()
    return {
        "start": first["contract"],
        "keys": last["keys-released"] - first["launched"],
        "data": last["rows"] - last["keys-released"],
        "train": first["trained"] - last["rows"],
        "seal": first["done"] - first["trained"],
        "total": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--records", type=int, nargs="+", default=[300, 10_000])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    lines = [
        f"`benchmarks/bench_job.py`, {machine()}; simulated TEE, brokers on loopback, SQLite. "
        "Seconds from launching the enclave (wall clock, one run each).",
        "",
        "| parties × records | enclave start | keys (all brokers) | data (decrypt+validate) "
        "| train+evaluate+report+ONNX | seal+receipt+ledger | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for records in args.records:
        t = run_once(args.parties, records)
        lines.append(
            f"| {args.parties} × {records:,} | {t['start']:.1f} | {t['keys']:.1f} "
            f"| {t['data']:.1f} | {t['train']:.1f} | {t['seal']:.1f} | {t['total']:.1f} |"
        )
        print(lines[-1], flush=True)
    if args.write:
        write_section("Enclave job", "\n".join(lines))


if __name__ == "__main__":
    main()
