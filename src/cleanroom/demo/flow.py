"""The whole multi-party story on one machine (what ``cleanroom demo`` runs).

Every step calls the same library code a real party, operator or recipient would; the demo
only plays all the roles in one work directory and reports what each step proved.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from cleanroom.broker.receipts import check_release_receipts
from cleanroom.client import ScoringClient, Workspace
from cleanroom.contract import Contract, ContractRegistry, SigningKey, VerifyingKey
from cleanroom.contract.keys import load_json_file
from cleanroom.contract.model import METRICS
from cleanroom.contract.workdir import draft_contract, generate_party_keys
from cleanroom.data import generate_sites, load_uci_sites, write_sites_csv
from cleanroom.data.medical_record import FEATURE_COLUMN_NAMES, LABEL_COLUMN
from cleanroom.demo.leakscan import ScanResult, scan_store
from cleanroom.demo.services import ServerProcess, free_port, start_server
from cleanroom.enclave import (
    JobOutcome,
    load_recipient_private_key,
    open_model,
    run_contract_job,
    verify_receipt,
)
from cleanroom.errors import ConfigurationError
from cleanroom.ledger import LedgerHead, read_entries, verify_ledger
from cleanroom.ml import score_onnx
from cleanroom.store import MEDICAL_RECORD_TABLE, Store
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
    launcher: SimulatedLauncher | None = None
    outcome: JobOutcome | None = None
    collaboration: dict[str, Any] = field(default_factory=dict)
    onnx_matches_enclave: bool = False
    score_example: dict[str, Any] = field(default_factory=dict)
    ledger_entries: int = 0
    ledger_verified: bool = False
    onnx: bytes = field(default=b"", repr=False)
    enclave_key: VerifyingKey | None = None

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
    with Workspace(state.workdir, state.store_url or None) as workspace:
        state.store_url = workspace.url
        for party in state.parties:
            with workspace.client(party, create_key_store=True) as client:
                keys = client.create_keys()
                client.create_dataset()
                advance = progress.task(f"{party}: encrypt + import", len(state.frames[party]))
                state.rows[party] = client.import_csv(
                    state.csv_paths[party], progress=_rows_done(advance)
                )
            generate_party_keys(state.workdir, party)
            progress.proved(
                f"{party}: {state.rows[party]:,} rows encrypted under "
                f"{keys.column_encryption_key} (CMK {keys.column_master_key} in its own key "
                "store, enclave-enabled, signed)"
            )


def scan_for_plaintext(state: DemoState, progress: Progress) -> None:
    """Step 1c: prove from the operator's side that the store holds no plaintext or key."""
    needles: list[bytes] = []
    with Workspace(state.workdir, state.store_url or None) as workspace:
        for party in state.parties:
            lines = state.csv_paths[party].read_text().splitlines()[1:201]
            needles.extend(line.encode() for line in lines if line.count(",") > 3)
            with workspace.client(party) as client:
                cek = client.column_encryption_key(f"CEK_{party}")
                needles.append(cek.secret_bytes())
                needles.append(cek.secret_bytes().hex().encode())
        state.scan = scan_store(workspace.store, state.store_url, needles)
    verdict = "no plaintext" if not state.scan.plaintext_found else "PLAINTEXT FOUND"
    progress.proved(
        f"the store holds {state.scan.cells:,} cells, all well-formed ciphertext, and "
        f"{verdict} ({state.scan.needles:,} known values and keys searched)"
    )


def launch_services(state: DemoState, progress: Progress) -> None:
    """Step 2a: measure the enclave bundle and start one key broker per hospital."""
    launcher = SimulatedLauncher(allow_simulation=True, workdir=state.workdir / "sim")
    state.launcher = launcher
    state.measurement = launcher.prepare_bundle(state.workdir / "enclave-bundle").measurement
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
    with Workspace(state.workdir, state.store_url or None).open_store() as store:
        registry = ContractRegistry(store)
        contract_hash = registry.submit(contract)
        for party in state.parties:  # each hospital signs with its own key
            key = SigningKey.load(state.workdir / "parties" / party / "signing-key.pem")
            registry.sign(contract_hash, party, key)
        state.contract = registry.require_in_force(contract_hash)  # ConsentMissing otherwise
    progress.proved(
        f"contract {contract_hash[:16]}… signed by all {len(state.parties)} hospitals: in force"
    )


#: Job events that close a timed phase, and the phase each one closes.
_PHASE_ENDS = {
    "launched": "enclave_start",
    "training": "decrypt",
    "evaluating": "train",
    "trained": "evaluate",
    "done": "seal_and_sign",
}


def run_job(state: DemoState, progress: Progress) -> None:
    """Step 3–4: the enclave launches, is attested, gets every key, trains, seals, signs."""
    assert state.contract is not None
    assert state.launcher is not None
    marks: dict[str, float] = {}
    start = time.perf_counter()
    last = start

    def on_event(event: Mapping[str, Any]) -> None:
        nonlocal last
        now = time.perf_counter()
        step = str(event.get("step"))
        if step in _PHASE_ENDS:
            marks[_PHASE_ENDS[step]] = now - last
            last = now
            if step == "training":
                progress.step(4, "The job trains, evaluates, seals the model and signs its receipt")
        elif step == "keys-released":
            marks["attest_and_release"] = marks.get("attest_and_release", 0.0) + now - last
            last = now
            progress.proved(
                f"broker {event.get('party')} released {event.get('count')} key(s) to "
                f"measurement {state.measurement[:12]}… (evidence and contract checked)"
            )
        elif step == "rows":
            progress.proved(
                f"enclave decrypted and validated {event.get('party')}: "
                f"{int(event.get('rows', 0)):,} rows"
            )
        elif step == "warning":
            progress.warn(str(event.get("message")))

    state.outcome = run_contract_job(
        state.workdir,
        state.store_url,
        state.contract.hash,
        allow_simulation=True,
        launcher=state.launcher,
        brokers=state.broker_urls,
        progress=on_event,
        serve=True,
    )
    state.timings.update(marks)
    # Enclave start-up is part of getting attested: report them as one phase.
    state.timings["attest_and_release"] = state.timings.pop("enclave_start", 0.0) + marks.get(
        "attest_and_release", 0.0
    )
    outcome = state.outcome
    progress.proved(
        f"model {outcome.model_id[:16]}… trained on {sum(outcome.rows.values()):,} rows; pooled "
        f"micro accuracy {float(outcome.metrics['micro_accuracy']):.1%}; "
        f"{outcome.keys_released} keys released; receipt signed"
    )


def open_outputs(state: DemoState, progress: Progress) -> None:
    """Step 5a: every hospital checks the receipt and opens what was sealed to it."""
    assert state.contract is not None
    assert state.outcome is not None
    assert state.launcher is not None
    outcome = state.outcome
    verified = verify_receipt(
        outcome.receipt,
        state.contract,
        trusted_roots=[state.launcher.root_certificate],
        allow_simulation=True,
    )
    recipient_keys = {
        party: load_recipient_private_key(state.workdir / "parties" / party / "recipient-key.pem")
        for party in state.parties
    }
    for party, key in recipient_keys.items():
        report = outcome.open_json("collaboration_report", party, key)
        mine = next(p for p in report["parties"] if p["party"] == party)
        state.collaboration[party] = {**mine, "pooled_on_all": report["pooled_on_all"]}
    first = state.parties[0]
    model = open_model(outcome.output("model", first), recipient_keys[first], outcome.receipt)
    (state.workdir / f"model-{first}.onnx").write_bytes(model.onnx)
    state.onnx = model.onnx
    state.enclave_key = verified.public_key
    progress.proved(
        f"receipt verified (enclave key {verified.public_key.to_jwk().get('x', '')[:10]}…); "
        f"{first} opened its sealed model {model.model_id[:16]}… and every hospital its report"
    )


def score_through_api(state: DemoState, progress: Progress) -> None:
    """Step 5b: a hospital scores records through the enclave's attested API."""
    assert state.contract is not None
    assert state.outcome is not None
    assert state.launcher is not None
    assert state.outcome.scoring_url is not None
    party = state.parties[0]
    frame = state.frames[party]
    sample = frame.drop(columns=[LABEL_COLUMN]).dropna().head(50)
    records = [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in sample.to_dict(orient="records")
    ]
    signing = SigningKey.load(state.workdir / "parties" / party / "signing-key.pem")
    with ScoringClient(
        state.outcome.scoring_url,
        contract=state.contract,
        party=party,
        signing_key=signing,
        trusted_roots=[state.launcher.root_certificate],
        insecure_simulation=True,
        expected_model_id=state.outcome.model_id,
    ) as client:
        answer = client.score(records[0])
        answers = client.score_batch(records)
    labels, probabilities = score_onnx(state.onnx, sample.reset_index(drop=True))
    decimals = state.contract.scoring.probability_decimals
    same_class = all(
        int(a["predictedClass"]) == int(b) for a, b in zip(answers, labels, strict=True)
    )
    close = all(
        abs(float(list(a["probabilities"].values())[i]) - float(p[i])) <= 10**-decimals
        for a, p in zip(answers, probabilities, strict=True)
        for i in range(len(p))
    )
    state.onnx_matches_enclave = same_class and close
    state.score_example = {"request": records[0], "response": answer}
    progress.proved(
        f"{party} scored a record through attested TLS: risk {answer['score']} "
        f"(model accuracy {answer['accuracy']}%); the opened ONNX model agrees on "
        f"{len(records)} records: {state.onnx_matches_enclave}"
    )


def verify_audit_ledger(state: DemoState, progress: Progress) -> None:
    """Step 6: the ledger verifies offline against the enclave key from the receipt."""
    assert state.contract is not None
    assert state.outcome is not None
    assert state.launcher is not None
    outcome = state.outcome
    assert state.enclave_key is not None  # from the receipt checked in step 5
    if outcome.enclave is not None:
        outcome.enclave.stop()  # the scoring server writes its usage counts on the way out
    with Workspace(state.workdir, state.store_url or None).open_store() as store:
        entries = read_entries(store, outcome.ledger_id)
    head = LedgerHead.from_json(load_json_file(outcome.outputs_dir / "ledger-head.json"))
    verified = verify_ledger(entries, state.enclave_key, head=head)
    receipts = check_release_receipts(verified.entries, state.contract)
    state.ledger_entries = verified.count
    state.ledger_verified = True
    kinds = sorted({e.kind for e in entries})
    progress.proved(
        f"ledger {outcome.ledger_id[:12]}…: {verified.count} signed, hash-chained entries verify "
        f"({', '.join(kinds)}); its {receipts} key releases carry receipts signed by each "
        "hospital's own broker key, pinned in the contract"
    )


def stop_services(state: DemoState) -> None:
    if state.outcome is not None and state.outcome.enclave is not None:
        state.outcome.enclave.stop()
    for server in reversed(state.servers):
        server.stop()
    state.servers.clear()


def build_result(state: DemoState) -> dict[str, Any]:
    """The demo's public result (what ``--json`` prints; accuracies are fractions)."""
    assert state.outcome is not None
    assert state.scan is not None
    outcome = state.outcome
    pooled_on_all = next(iter(state.collaboration.values()))["pooled_on_all"]
    parties = []
    for party in state.parties:
        mine = state.collaboration[party]
        parties.append(
            {
                "name": party,
                "table": Store.table_name_for(party, MEDICAL_RECORD_TABLE),
                "rows": state.rows[party],
                "own_model": {
                    "own_test_accuracy": mine["alone_on_own"]["micro_accuracy"],
                    "all_test_accuracy": mine["alone_on_all"]["micro_accuracy"],
                },
                "pooled_model": {
                    "own_test_accuracy": mine["pooled_on_own"]["micro_accuracy"],
                    "all_test_accuracy": pooled_on_all["micro_accuracy"],
                },
            }
        )
    timings = dict(state.timings)
    return {
        "dataset": state.options.dataset,
        "records_total": state.records_total,
        "parties": parties,
        "pooled": {
            key: pooled_on_all[key]
            for key in (
                "micro_accuracy",
                "macro_accuracy",
                "log_loss",
                "log_loss_reduction",
                "top_k_accuracy",
                "confusion_matrix",
            )
        },
        "attestation": {
            "tee": "simulated" if outcome.simulated else "hardware",
            "measurement": outcome.measurement,
            "keys_released": outcome.keys_released,
        },
        "model": {"sha256": outcome.model_id, "onnx_matches_enclave": state.onnx_matches_enclave},
        "score_example": state.score_example,
        "ledger": {"entries": state.ledger_entries, "verified": state.ledger_verified},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "store": {
            "url": _redact_url(state.store_url),
            "plaintext_found": state.scan.plaintext_found,
        },
        "workdir": str(state.workdir),
    }


def _redact_url(url: str) -> str:
    """A store URL without its password, if it has one."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable store url>"


def run_demo(options: DemoOptions, progress: Progress) -> dict[str, Any]:
    """Play the whole story; returns :func:`build_result`. Servers are always stopped."""
    state = DemoState(options, prepare_workdir(options.workdir), store_url=options.store_url or "")
    started = time.perf_counter()
    try:
        progress.step(1, "Hospitals encrypt their records into the operator's store")
        load_data(state, progress)
        with timed(state, "import"):
            encrypt_and_import(state, progress)
        scan_for_plaintext(state, progress)
        progress.step(2, "A contract is drafted and every hospital signs it")
        launch_services(state, progress)
        draft_and_sign(state, progress)
        progress.step(3, "The enclave launches, is attested, and each broker releases its key")
        run_job(state, progress)  # announces step 4 when training starts
        progress.step(5, "Hospitals open their sealed outputs and score through the attested API")
        open_outputs(state, progress)
        score_through_api(state, progress)
        progress.step(6, "The audit ledger is verified")
        verify_audit_ledger(state, progress)
    finally:
        stop_services(state)
    state.timings["total"] = time.perf_counter() - started
    return build_result(state)
