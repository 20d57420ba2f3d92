"""Shared by bench_job.py and bench_train.py: a real enclave job on loopback.

:func:`set_up_job` imports each site encrypted by its own :class:`PartyClient` into a fresh
SQLite store, starts one broker per party (uvicorn threads on 127.0.0.1), submits and signs
a contract for multinomial logistic regression on every MedicalRecord feature (80/20 split,
seed 0); :meth:`JobSetup.run` launches the simulated enclave with ``run_contract_job``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import uvicorn

from cleanroom.broker import BrokerSettings, DecisionLog, create_app
from cleanroom.client import PartyClient
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.contract.workdir import generate_party_keys
from cleanroom.data import generate_sites
from cleanroom.data.medical_record import FEATURE_COLUMN_NAMES
from cleanroom.enclave import JobOutcome, run_contract_job
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import default_url, open_store
from cleanroom.tee import SimulatedLauncher

FEATURES = list(FEATURE_COLUMN_NAMES)
#: The contract's split; the plaintext baseline of bench_train.py uses the same.
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


def synthetic_sites(parties: int, records: int) -> dict[str, pd.DataFrame]:
    """``generate_sites(parties, records, seed=0)`` under the party names the contract uses."""
    names = [f"hospital_{chr(ord('a') + i)}" for i in range(parties)]
    return dict(zip(names, generate_sites(parties, records, seed=0).values(), strict=True))


def _serve(app: Any) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


@dataclass
class JobSetup:
    """A signed contract over imported sites, brokers running; :meth:`close` when done."""

    work: Path
    store_url: str
    store: Any
    launcher: SimulatedLauncher
    bundle: Any
    contract: Contract
    servers: list[uvicorn.Server]
    import_seconds: float

    def run(
        self, progress: Callable[[dict[str, Any]], None], *, timeout: float = 4 * 3600
    ) -> JobOutcome:
        """Run the enclave job; ``timeout`` bounds the wait for each progress event."""
        return run_contract_job(
            self.work,
            self.store_url,
            self.contract.hash,
            allow_simulation=True,
            launcher=self.launcher,
            bundle=self.bundle,
            progress=progress,
            timeout=timeout,
        )

    def close(self) -> None:
        for server in self.servers:
            server.should_exit = True
        self.store.close()


def set_up_job(
    work: Path,
    sites: Mapping[str, pd.DataFrame],
    *,
    launcher: SimulatedLauncher | None = None,
) -> JobSetup:
    """Import ``sites`` (party name → frame) encrypted, start brokers, sign the contract."""
    store_url = default_url(work)
    store = open_store(store_url)
    if launcher is None:
        launcher = SimulatedLauncher(allow_simulation=True, workdir=work / "sim")
    bundle = launcher.prepare_bundle(work / "bundle")
    names = list(sites)
    key_stores = {}
    import_seconds = 0.0
    # Every import before any broker thread starts: a client may fork encryption workers.
    for name in names:
        key_stores[name] = key_store = LocalKeyStore(work / "keys" / name)
        client = PartyClient(store, key_store, party=name)
        client.create_keys()
        client.create_dataset()
        start = time.perf_counter()
        client.import_dataframe(sites[name])
        import_seconds += time.perf_counter() - start
    entries, servers = [], []
    for name in names:
        key_store = key_stores[name]
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
                "split": {"train_fraction": TRAIN_FRACTION, "seed": SPLIT_SEED},
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
    return JobSetup(
        work=work,
        store_url=store_url,
        store=store,
        launcher=launcher,
        bundle=bundle,
        contract=contract,
        servers=servers,
        import_seconds=import_seconds,
    )
