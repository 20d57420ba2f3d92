"""The whole multi-party story on one machine (what ``cleanroom demo`` runs).

Every step calls the same library code a real party, operator or recipient would; the demo
only plays all the roles in one work directory and reports what each step proved.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from cleanroom.client import Workspace
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.contract.model import METRICS
from cleanroom.contract.workdir import draft_contract, generate_party_keys
from cleanroom.data import generate_sites, load_uci_sites, write_sites_csv
from cleanroom.data.medical_record import FEATURE_COLUMN_NAMES, LABEL_COLUMN
from cleanroom.demo.leakscan import ScanResult, scan_store
from cleanroom.demo.services import ServerProcess, free_port, start_server
from cleanroom.errors import ConfigurationError
from cleanroom.store import MEDICAL_RECORD_TABLE
from cleanroom.tee.simulated import SimulatedLauncher

Dataset = Literal["synthetic", "uci-heart"]
MARKER = ".cleanroom-demo"


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``cleanroom demo`` runs. Defaults: 4 synthetic hospitals × 100,000 records."""

    parties: int = 4
    records: int = 100_000
    dataset: Dataset = "synthetic"
    algorithm: str = "multinomial_logistic_regression"
    store_url: str | None = None
    workdir: Path = Path("cleanroom-demo")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in ("synthetic", "uci-heart"):
            raise ConfigurationError("--dataset is 'synthetic' or 'uci-heart'")
        if self.dataset == "synthetic" and not 2 <= self.parties <= 26:
            raise ConfigurationError("--parties must be between 2 and 26")
        if self.dataset == "synthetic" and self.records < 200:
            raise ConfigurationError("--records must be at least 200 per hospital")


class Progress(Protocol):
    """How the demo tells a person what happens (Rich on a terminal, silent for --json)."""

    def step(self, number: int, title: str) -> None: ...

    def task(self, description: str, total: int) -> Callable[[int], None]: ...

    def proved(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


@dataclass
class DemoState:
    """Everything the steps learn, in the order they learn it."""

    options: DemoOptions
    workdir: Path
    store_url: str = ""
    parties: list[str] = field(default_factory=list)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    csv_paths: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    scan: ScanResult | None = None
    contract: Contract | None = None
    measurement: str = ""
    servers: list[ServerProcess] = field(default_factory=list)
    broker_urls: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def records_total(self) -> int:
        return sum(self.rows.values())


@contextmanager
def timed(state: DemoState, phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        state.timings[phase] = state.timings.get(phase, 0.0) + time.perf_counter() - start


def prepare_workdir(workdir: Path) -> Path:
    """A fresh work directory: a previous demo's is wiped; anything else is refused."""
    workdir = workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise ConfigurationError(
                f"{workdir} exists and is not a demo work directory; give another --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by cleanroom demo; wiped by the next run\n")
    return workdir


def party_name(site: str) -> str:
    """A site name (``hospital-a``) as a party identifier (``hospital_a``)."""
    return site.replace("-", "_")


def load_data(state: DemoState, progress: Progress) -> None:
    """Step 1a: each hospital gets its records (synthetic or the real UCI sites) as CSV."""
    options = state.options
    if options.dataset == "uci-heart":
        sites = load_uci_sites()
    else:
        sites = generate_sites(options.parties, options.records, options.seed)
    state.frames = {party_name(site): frame for site, frame in sites.items()}
    state.parties = list(state.frames)
    paths = write_sites_csv(sites, state.workdir / "data")
    state.csv_paths = {party_name(site): path for site, path in paths.items()}
    total = sum(len(f) for f in state.frames.values())
    progress.proved(
        f"{len(state.parties)} hospitals hold {total:,} records "
        f"({options.dataset}) in their own CSV files"
    )


def _rows_done(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    return lambda done, _total: advance(done)


def encrypt_and_import(state: DemoState, progress: Progress) -> None:
    """Step 1b: each hospital creates its keys and imports its records encrypted."""
    workspace = Workspace(state.workdir, state.store_url or None)
    state.store_url = workspace.url
    for party in state.parties:
        client = workspace.client(party, create_key_store=True)
        keys = client.create_keys()
        client.create_dataset()
        advance = progress.task(f"{party}: encrypt + import", len(state.frames[party]))
        state.rows[party] = client.import_csv(state.csv_paths[party], progress=_rows_done(advance))
        generate_party_keys(state.workdir, party)
        progress.proved(
            f"{party}: {state.rows[party]:,} rows encrypted under {keys.column_encryption_key} "
            f"(CMK {keys.column_master_key} in its own key store, enclave-enabled, signed)"
        )


def scan_for_plaintext(state: DemoState, progress: Progress) -> None:
    """Step 1c: prove from the operator's side that the store holds no plaintext or key."""
    workspace = Workspace(state.workdir, state.store_url or None)
    needles: list[bytes] = []
    for party in state.parties:
        lines = state.csv_paths[party].read_text().splitlines()[1:201]
        needles.extend(line.encode() for line in lines if line.count(",") > 3)
        cek = workspace.client(party).column_encryption_key(f"CEK_{party}")
        needles.append(cek.secret_bytes())
        needles.append(cek.secret_bytes().hex().encode())
    state.scan = scan_store(workspace.open_store(), state.store_url, needles)
    verdict = "no plaintext" if not state.scan.plaintext_found else "PLAINTEXT FOUND"
    progress.proved(
        f"the store holds {state.scan.cells:,} cells, all well-formed ciphertext, and "
        f"{verdict} ({state.scan.needles:,} known values and keys searched)"
    )


def launch_services(state: DemoState, progress: Progress) -> SimulatedLauncher:
    """Step 2a: measure the enclave bundle and start one key broker per hospital."""
    launcher = SimulatedLauncher(allow_simulation=True, workdir=state.workdir / "sim")
    bundle = launcher.prepare_bundle(state.workdir / "enclave-bundle")
    state.measurement = bundle.measurement
    progress.warn(
        "the enclave runs on the SIMULATED TEE (development only): it proves the "
        "verification path, not confidentiality from this machine's operator"
    )
    root = state.workdir / "sim" / "simulation-root.pem"
    for party in state.parties:
        port = free_port()
        server = start_server(
            f"broker-{party}",
            [
                "broker",
                "serve",
                "--party",
                party,
                "--workdir",
                str(state.workdir),
                *(["--store", state.store_url] if state.options.store_url else []),
                "--insecure-simulation",
                "--simulation-root",
                str(root),
            ],
            port=port,
            health_path="/kbs/v0/auth",
            log_dir=state.workdir / "logs",
        )
        state.servers.append(server)
        state.broker_urls[party] = server.url
    progress.proved(
        f"{len(state.parties)} key brokers listen on loopback, one per hospital; "
        f"enclave measurement {state.measurement[:16]}…"
    )
    return launcher


def draft_and_sign(state: DemoState, progress: Progress) -> None:
    """Step 2b: a contract is drafted and every hospital signs its hash."""
    options = state.options
    contract = draft_contract(
        state.workdir,
        parties=state.parties,
        brokers=state.broker_urls,
        contract_id=f"demo-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}",
        title=f"Pooled heart-disease risk model ({len(state.parties)} hospitals)",
        algorithm={
            "name": options.algorithm,
            "features": list(FEATURE_COLUMN_NAMES),
            "label": LABEL_COLUMN,
            "split": {"train_fraction": 0.8, "seed": options.seed},
            "metrics": list(METRICS),
        },
        enclave={
            "tee_types": ["simulated"],
            "reference_measurements": [state.measurement],
            "allow_simulation": True,
        },
        dataset=(MEDICAL_RECORD_TABLE, "medical_record", 50),
    )
    (state.workdir / "contract.json").write_text(contract.to_json())
    workspace = Workspace(state.workdir, state.store_url or None)
    registry = ContractRegistry(workspace.open_store())
    contract_hash = registry.submit(contract)
    for party in state.parties:
        key = SigningKey.load(state.workdir / "parties" / party / "signing-key.pem")
        registry.sign(contract_hash, party, key)
    status = registry.status(contract_hash)
    if not status.in_force:
        raise ConfigurationError(f"the contract is not in force: {status.explain()}")
    state.contract = registry.require_in_force(contract_hash)
    progress.proved(
        f"contract {contract_hash[:16]}… signed by all {len(state.parties)} hospitals: in force"
    )


def stop_services(state: DemoState) -> None:
    for server in reversed(state.servers):
        server.stop()
    state.servers.clear()


def summary_rows(state: DemoState) -> Sequence[dict[str, Any]]:
    return [
        {"name": party, "table": f"ds_{party}_{MEDICAL_RECORD_TABLE}", "rows": state.rows[party]}
        for party in state.parties
    ]
