"""The enclave's training job as a library function: :func:`run_job`.

Runs inside the enclave process (``cleanroom.enclave.commands`` wraps it as the ``train``
enclave command), under a contract in force:

1. the contract must be in force (:meth:`ContractRegistry.require_in_force`); every
   dataset it names must exist, follow the contract's schema and hold ``min_rows`` — all
   checked *before* any key is asked for;
2. the enclave makes its signing key (Ed25519, memory only), binds it into evidence from
   the platform (REPORTDATA over ``{"nonce": job_id, "tee-pubkey": <its JWK>}``) and
   starts a ledger in the store whose genesis records the key;
3. it attests to every party's broker (KBS protocol; raw evidence, or an EAR token from
   ``verifier_url``) and receives each CEK its datasets use, with the broker's signed
   release receipt; any refusal stops the job;
4. each party's ciphertext is read in ``row_id`` order in batches, digested, decrypted,
   validated against the schema; the party's keys are zeroed right after;
5. per party a seeded, disjoint, stratified split; the contract's algorithm trained on the
   pooled training rows; ML.NET metrics on the pooled test rows; the collaboration report;
6. the model exported to ONNX and checked against onnxruntime on the test rows;
7. the outputs the contract names sealed to each recipient's key (:mod:`.sealing`), the
   receipt signed (:mod:`.receipt`), the ledger head signed; all written to
   ``outputs_dir`` (sealed files, ``receipt.json``, ``ledger.jsonl``, ``ledger-head.json``).

Nothing here writes plaintext or a key anywhere; errors name parties and columns, never
values. The contract's hyperparameters are read by :func:`contract_hyperparameters`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from cleanroom.attestation import report_data_for_runtime_data, runtime_data_for
from cleanroom.broker import KbsClient
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.errors import BrokerError, ConfigurationError, TrainingError
from cleanroom.ledger import Ledger, to_jsonl
from cleanroom.ml import (
    CollaborationReport,
    FeatureSpec,
    MulticlassMetrics,
    TrainedModel,
    collaboration_report,
    export_onnx,
    medical_record_spec,
    onnx_matches,
    pool,
    resolve_hyperparameters,
    train,
    train_test_split,
)
from cleanroom.ml.features import check_featurization
from cleanroom.ml.metrics import DEFAULT_TOP_K
from cleanroom.store import DatasetInfo, DatasetSchema, Store, medical_record_schema
from cleanroom.tee import Platform

from .data import (
    DEFAULT_BATCH_ROWS,
    DatasetDigest,
    check_schema,
    default_workers,
    read_parties,
)
from .receipt import body_hash, reported_config_id, sign_receipt
from .sealing import seal_output

_log = logging.getLogger("cleanroom.enclave")

#: ``progress(step, **fields)`` — called at every step of the job (no secrets in fields).
Progress = Callable[..., None]

#: Hyperparameters the job reads itself (not passed to the estimator).
JOB_SETTINGS: tuple[str, ...] = ("featurization", "top_k")

INSECURE_WARNING = (
    "INSECURE: the enclave job runs on the SIMULATED TEE — the operator can read its memory "
    "(development only)"
)
_SCHEMAS: Mapping[str, Callable[[], DatasetSchema]] = {"medical_record": medical_record_schema}


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file the job wrote to the outputs directory."""

    kind: str
    party: str | None
    file: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "party", "file", "sha256"}``."""
        return {"kind": self.kind, "party": self.party, "file": self.file, "sha256": self.sha256}


@dataclass(frozen=True, eq=False, kw_only=True)
class TrainedJob:
    """What the job produced, held in the enclave's memory (e.g. for a scoring server).

    ``onnx`` is the sealed model's plaintext and ``model_id`` its SHA-256; ``metrics``
    the pooled model on every party's test rows; ``signing_key`` the enclave key that
    signed the receipt and the ledger (use :attr:`ledger` to append, e.g. scoring usage).
    """

    contract: Contract
    job_id: str
    schema: DatasetSchema
    spec: FeatureSpec
    model: TrainedModel
    onnx: bytes = field(repr=False)
    model_id: str
    metrics: MulticlassMetrics
    collaboration: CollaborationReport
    receipt: Mapping[str, Any] = field(repr=False)
    ledger: Ledger
    signing_key: SigningKey = field(repr=False)
    measurement: str
    simulated: bool
    outputs: tuple[OutputFile, ...]
    outputs_dir: Path

    @property
    def accuracy(self) -> float:
        """Pooled micro accuracy on every party's held-out test rows (0..1)."""
        return self.metrics.micro_accuracy

    @property
    def contract_hash(self) -> str:
        """The contract the job ran under."""
        return self.contract.hash

    def __reduce__(self) -> Any:
        raise TypeError("a trained job holds the enclave's signing key and cannot be pickled")


def _schema_for(contract: Contract, infos: list[DatasetInfo]) -> DatasetSchema:
    names = {d.schema_name for d in contract.datasets}
    if len(names) != 1:
        raise TrainingError("the contract's datasets name different schemas")
    name = names.pop()
    factory = _SCHEMAS.get(name)
    return factory() if factory is not None else infos[0].schema


def spec_from_schema(schema: DatasetSchema) -> FeatureSpec:
    """A feature spec from a dataset schema: columns with categories are categorical, the
    others numeric (integer bounds become ranges); the label's categories are the classes."""
    if schema.label is None:
        raise TrainingError("the dataset schema names no label column")
    label = schema.column(schema.label)
    if not label.categories:
        raise TrainingError(f"the label column {label.name!r} lists no categories")
    numeric: list[str] = []
    categorical: dict[str, tuple[str, ...]] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for column in schema.columns:
        if column.name == schema.label:
            continue
        if column.categories:
            categorical[column.name] = tuple(
                str(int(c)) if isinstance(c, bool) else str(c) for c in column.categories
            )
        else:
            numeric.append(column.name)
            lo, hi = column.minimum, column.maximum
            if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
                ranges[column.name] = (lo, hi)
    return FeatureSpec(
        numeric=tuple(numeric),
        categorical=categorical,
        label=schema.label,
        classes=tuple(int(c) for c in label.categories),
        ranges=ranges,
    )


def feature_spec_for(contract: Contract, schema: DatasetSchema, schema_name: str) -> FeatureSpec:
    """The spec of the contract's features and label over ``schema``."""
    base = medical_record_spec() if schema_name == "medical_record" else spec_from_schema(schema)
    algorithm = contract.algorithm
    if algorithm.label != base.label:
        raise TrainingError(f"the contract's label {algorithm.label!r} is not the schema's label")
    known = set(base.feature_columns)
    unknown = [f for f in algorithm.features if f not in known]
    if unknown:
        raise TrainingError(f"the contract names unknown feature(s): {', '.join(unknown)}")
    wanted = set(algorithm.features)
    return FeatureSpec(
        numeric=tuple(n for n in base.numeric if n in wanted),
        categorical={k: v for k, v in base.categorical.items() if k in wanted},
        label=base.label,
        classes=base.classes,
        ranges={k: v for k, v in base.ranges.items() if k in wanted},
    )


def _metrics_view(metrics: MulticlassMetrics, names: tuple[str, ...]) -> dict[str, Any]:
    full = metrics.to_dict()
    view = {"classes": full["classes"], "rows": full["rows"]}
    for name in names:
        view[name] = full[name]
        if name == "top_k_accuracy":
            view["top_k"] = full["top_k"]
    return view


def _write(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def contract_hyperparameters(
    algorithm: str, given: Mapping[str, Any]
) -> tuple[dict[str, Any], str, int]:
    """The estimator hyperparameters, featurization and top-K a contract asks for.

    Contract keys are lowercase: ``c`` is logistic regression's ``C``; ``l2`` is the L2
    strength (``C = 1 / l2`` for logistic regression, ``l2_regularization`` for trees);
    ``featurization`` and ``top_k`` are job settings. Everything else must be a key of
    :data:`cleanroom.ml.DEFAULT_HYPERPARAMETERS` for the algorithm.
    """
    params = dict(given)
    featurization = check_featurization(str(params.pop("featurization", "schema")))
    top_k = params.pop("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise ConfigurationError("hyperparameter 'top_k' must be an integer")
    if "c" in params:
        params["C"] = params.pop("c")
    if "l2" in params:
        l2 = params.pop("l2")
        if isinstance(l2, bool) or not isinstance(l2, int | float) or l2 <= 0:
            raise ConfigurationError("hyperparameter 'l2' must be a positive number")
        if algorithm == "multinomial_logistic_regression":
            params.setdefault("C", 1.0 / float(l2))
        else:
            params.setdefault("l2_regularization", float(l2))
    return resolve_hyperparameters(algorithm, params), featurization, top_k


def _wait_for_broker(
    http: httpx.Client, party: str, url: str, *, patience: float
) -> httpx.Response:
    """The broker's answer to ``GET /.well-known/jwks.json`` (its key set), waiting up to
    ``patience`` seconds for a broker that refuses connections (still starting)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return http.get("/.well-known/jwks.json")
        except httpx.ConnectError:
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"the broker of {party} at {url} refuses connections (waited {patience:.0f} s)"
                ) from None
            time.sleep(0.5)


def broker_url_for(named: str, override: str | None, *, simulated: bool) -> str:
    """Where the enclave reaches a party's broker: the contract's URL.

    The operator may re-route brokers (``--broker``) only on the simulated TEE, where it
    can read the enclave anyway. On real hardware a substitute broker could hand the
    enclave a key of the operator's choosing (and so data of its choosing), so the URL is
    the contract's, over TLS, whose server certificate authenticates the party's broker.
    """
    if override is not None and override != named:
        if not simulated:
            raise ConfigurationError(
                "a broker URL other than the contract's is accepted only on the simulated TEE"
            )
        return override
    if not simulated and not named.startswith("https://"):
        raise ConfigurationError(
            "on a hardware TEE the contract's broker URLs must be https:// (authenticated)"
        )
    return named


def run_job(
    *,
    platform: Platform,
    store: Store,
    contract_hash: str,
    outputs_dir: Path,
    brokers: Mapping[str, str] | None = None,
    verifier_url: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    threads: int | None = 1,
    workers: int | None = None,
    progress: Progress | None = None,
    http_timeout: float = 30.0,
) -> TrainedJob:
    """Run the training job of ``contract_hash`` (module docstring); the trained job.

    ``brokers`` overrides a party's ``broker_url`` from the contract (same protocol and
    policy; e.g. when the operator maps ports). ``verifier_url``: attest to the brokers
    with EAR tokens from that verifier instead of raw evidence. ``workers``: processes
    that decrypt parties in parallel (default: one per party, at most one per CPU).

    Raises :class:`~cleanroom.errors.ConsentMissing` / :class:`ContractError` (not in
    force), :class:`PolicyViolation` / :class:`BrokerError` (a broker refused),
    :class:`TrainingError` (a guard fired, training failed), :class:`StorageError`.
    """
    say: Progress = progress or (lambda step, **fields: None)
    outputs_dir = Path(outputs_dir)
    registry = ContractRegistry(store)
    contract = registry.require_in_force(contract_hash)
    say("contract", contract_hash=contract.hash, parties=list(contract.party_names))
    hyperparameters, featurization, top_k = contract_hyperparameters(
        contract.algorithm.name, contract.algorithm.hyperparameters
    )

    infos: list[tuple[str, DatasetInfo, int]] = []
    for dataset in contract.datasets:
        info = store.dataset(dataset.party, dataset.table)
        infos.append((dataset.party, info, dataset.min_rows))
    schema = _schema_for(contract, [i for _, i, _ in infos])
    for party, info, min_rows in infos:
        check_schema(party, info.schema, schema)
        count = store.count(info)
        if count < min_rows:
            raise TrainingError(
                f"party {party!r} has {count} rows in {info.name!r}; the contract needs "
                f"at least {min_rows}"
            )
    spec = feature_spec_for(contract, schema, contract.datasets[0].schema_name)
    outputs_dir.mkdir(parents=True, exist_ok=True)

    job_id = uuid.uuid4().hex
    key = SigningKey.generate("ed25519")
    public_jwk = key.public_key.to_jwk()
    runtime = runtime_data_for(job_id, public_jwk)
    evidence = platform.evidence(report_data_for_runtime_data(runtime))
    # The brokers release under the contract the TEE reports (its config id), so the job
    # must run exactly that contract, whatever the operator passed on the command line.
    reported = reported_config_id(evidence)
    if reported is not None and not hmac.compare_digest(reported, contract.hash):
        raise ConfigurationError("the enclave was launched for another contract than this job's")
    simulated = platform.tee == "simulated"
    if simulated:
        _log.warning(INSECURE_WARNING)
        say("warning", message=INSECURE_WARNING)
    ledger = Ledger.create(
        store,
        key,
        ledger_id=f"job-{job_id}",
        genesis={"contract_hash": contract.hash, "job_id": job_id, "tee": platform.tee},
    )
    ledger.append(
        "enclave.launch",
        {
            "contract_hash": contract.hash,
            "job_id": job_id,
            "tee": platform.tee,
            "simulated": simulated,
            "parties": list(contract.party_names),
        },
    )
    say(
        "launched", job_id=job_id, ledger_id=ledger.ledger_id, tee=platform.tee, simulated=simulated
    )

    # -- keys: every broker must release before anything is decrypted ---------------------
    overrides = dict(brokers or {})
    keys: dict[str, dict[str, ColumnEncryptionKey]] = {}
    measurement: str | None = None
    verifier = (
        None if verifier_url is None else httpx.Client(base_url=verifier_url, timeout=http_timeout)
    )
    try:
        for party in dict.fromkeys(p for p, _, _ in infos):
            needed = sorted(
                {
                    c.cek
                    for p, info, _ in infos
                    if p == party
                    for c in info.schema.columns
                    if c.encrypted and c.cek is not None
                }
            )
            url = broker_url_for(
                contract.party(party).broker_url, overrides.get(party), simulated=simulated
            )
            say("attesting", party=party, broker=url)
            party_keys: dict[str, ColumnEncryptionKey] = keys.setdefault(party, {})
            receipts: list[str] = []
            with (
                httpx.Client(base_url=url, timeout=http_timeout) as http,
                KbsClient(http, platform=platform, verifier=verifier) as kbs,
            ):
                jwks_reply = _wait_for_broker(http, party, url, patience=http_timeout)
                kbs.attest()
                # Receipts verify under the broker key the parties pinned in the contract;
                # a contract without one falls back to the key set the broker serves.
                jwks = contract.party(party).broker_jwks
                if jwks is None:
                    if jwks_reply.status_code != 200:
                        raise BrokerError(f"the broker of {party} publishes no key set")
                    jwks = jwks_reply.json()
                claims: dict[str, Any] = {}
                for name in needed:
                    release = kbs.cek(party, name)
                    party_keys[name] = release.cek
                    claims = release.receipt_claims(jwks)
                    receipts.append(release.receipt)
                    if claims.get("contract") != contract.hash:
                        raise BrokerError(
                            f"the broker of {party} released under another contract than "
                            "this job's (the TEE's config id is not the job's contract)"
                        )
            released_measurement = str(claims.get("measurement", ""))
            if measurement is None:
                measurement = released_measurement
            elif released_measurement != measurement:
                raise BrokerError("brokers report different measurements for this enclave")
            ledger.append(
                "attestation.accepted",
                {
                    "party": party,
                    "broker": url,
                    "mode": "ear" if verifier is not None else "evidence",
                    "tee": claims.get("tee"),
                    "measurement": released_measurement,
                    "simulated": bool(claims.get("simulated")),
                },
            )
            ledger.append(
                "keys.released",
                {
                    "party": party,
                    "resources": [f"{party}/cek/{n}" for n in needed],
                    "receipts": receipts,
                },
            )
            say(
                "keys-released",
                party=party,
                count=len(party_keys),
                simulated=bool(claims.get("simulated")),
            )
    except BaseException as error:
        for party_keys in keys.values():
            for k in party_keys.values():
                k.zero()
        if isinstance(error, httpx.HTTPError):
            raise BrokerError(
                f"a broker did not answer ({type(error).__name__}); no key was used"
            ) from None
        raise
    finally:
        if verifier is not None:
            verifier.close()
    assert measurement is not None

    # -- data -------------------------------------------------------------------------------
    ledger.append(
        "job.started",
        {
            "algorithm": contract.algorithm.name,
            "featurization": featurization,
            "seed": contract.algorithm.split.seed,
        },
    )
    columns = [*spec.feature_columns, spec.label]
    frames: dict[str, list[pd.DataFrame]] = {}
    digests: dict[str, list[tuple[str, DatasetDigest]]] = {}
    readers = default_workers(len(keys)) if workers is None else workers
    say("reading", parties=list(keys), workers=readers)
    try:
        for read in read_parties(
            store,
            [(party, info) for party, info, _ in infos],
            keys,
            columns=columns,
            batch_rows=batch_rows,
            workers=readers,
        ):
            frames[read.party] = read.frames
            for info, digest in read.digests:
                digests.setdefault(read.party, []).append((info.name, digest))
                ledger.append(
                    "job.rows",
                    {
                        "party": read.party,
                        "table": info.name,
                        "rows": digest.rows,
                        "ciphertext_sha256": digest.sha256,
                    },
                )
                say("rows", party=read.party, table=info.name, rows=digest.rows)
    finally:
        for party_keys in keys.values():
            for k in party_keys.values():
                k.zero()
        keys.clear()

    # -- split, train, evaluate -------------------------------------------------------------
    split = contract.algorithm.split
    test_fraction = 1.0 - split.train_fraction
    splits: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for party, parts in frames.items():
        whole = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        halves = train_test_split(
            whole, label=spec.label, test_fraction=test_fraction, seed=split.seed
        )
        splits[party] = (halves.train, halves.test)
        del whole, halves  # the unsplit frame must not live on through training
    frames.clear()
    settings: dict[str, Any] = {
        "spec": spec,
        "algorithm": contract.algorithm.name,
        "hyperparameters": hyperparameters,
        "featurization": featurization,
        "seed": split.seed,
        "threads": threads,
    }
    say("training", algorithm=contract.algorithm.name, rows=sum(len(t) for t, _ in splits.values()))
    # Every party's training rows in order, without a pooled copy (same model as one frame).
    pooled = train([tr for tr, _ in splits.values()], **settings)
    all_test = pool({p: te for p, (_, te) in splits.items()})
    say("evaluating", parties=len(splits))
    report = collaboration_report(splits, pooled=pooled, top_k=top_k, **settings)
    metrics = report.pooled_on_all
    onnx = export_onnx(pooled)
    matches = onnx_matches(pooled, onnx, all_test)
    if not matches:
        raise TrainingError("the ONNX model does not score as the trained model does")
    model_id = hashlib.sha256(onnx).hexdigest()
    ledger.append(
        "job.trained",
        {
            "algorithm": contract.algorithm.name,
            "model_sha256": model_id,
            "onnx_bytes": len(onnx),
            "micro_accuracy": metrics.micro_accuracy,
            "train_rows": sum(len(t) for t, _ in splits.values()),
            "test_rows": len(all_test),
        },
    )
    say("trained", model_id=model_id, micro_accuracy=metrics.micro_accuracy, onnx_matches=True)

    # -- seal the outputs the contract names ------------------------------------------------
    outputs: list[OutputFile] = []

    def seal(kind: str, party: str, data: bytes, content_type: str) -> None:
        envelope = seal_output(
            data,
            contract.party(party).recipient_key,
            kind=kind,
            party=party,
            contract_hash=contract.hash,
            content_type=content_type,
        )
        name = f"{kind}.{party}.jwe.json"
        digest = _write(outputs_dir, name, json.dumps(envelope, indent=1).encode("utf-8"))
        outputs.append(OutputFile(kind, party, name, digest))
        ledger.append(
            "model.sealed" if kind == "model" else "metrics.sealed",
            {"kind": kind, "party": party, "file": name, "sha256": digest},
        )
        say("sealed", kind=kind, party=party, file=name)

    for party in contract.outputs.model_recipients:
        seal("model", party, onnx, "application/onnx")
    for grant in contract.outputs.metrics:
        on_own = report.party(grant.party).pooled_on_own if grant.party in splits else None
        document = {
            "contract_hash": contract.hash,
            "model_id": model_id,
            "pooled_on_all": _metrics_view(metrics, grant.metrics),
            "pooled_on_own": None if on_own is None else _metrics_view(on_own, grant.metrics),
        }
        seal(
            "metrics",
            grant.party,
            json.dumps(document, sort_keys=True).encode(),
            "application/json",
        )
    report_document = {"contract_hash": contract.hash, "model_id": model_id, **report.to_dict()}
    for party in contract.outputs.collaboration_report:
        seal(
            "collaboration_report",
            party,
            json.dumps(report_document, sort_keys=True).encode(),
            "application/json",
        )

    # -- receipt, ledger head -----------------------------------------------------------------
    datasets_doc = []
    for party, items in digests.items():
        train_rows, test_rows = splits[party]
        for table, digest in items:
            datasets_doc.append(
                {
                    "party": party,
                    "table": table,
                    "rows": digest.rows,
                    "ciphertext_sha256": digest.sha256,
                    "digest_format": digest.to_dict()["format"],
                    "train_rows": len(train_rows),
                    "test_rows": len(test_rows),
                }
            )
    body = {
        "contract_hash": contract.hash,
        "job_id": job_id,
        "ledger_id": ledger.ledger_id,
        "measurement": measurement,
        "tee": platform.tee,
        "simulated": simulated,
        "datasets": datasets_doc,
        "algorithm": {
            "name": contract.algorithm.name,
            "featurization": featurization,
            "hyperparameters": hyperparameters,
            "seed": split.seed,
            "split": {"train_fraction": split.train_fraction, "seed": split.seed},
            "top_k": top_k,
        },
        "spec": spec.to_dict(),
        "metrics": _metrics_view(metrics, contract.algorithm.metrics),
        "model": {
            "format": "onnx",
            "sha256": model_id,
            "bytes": len(onnx),
            "onnx_matches": matches,
        },
        "outputs": [o.to_dict() for o in outputs],
        "enclave_public_key": public_jwk,
        "attestation": {"evidence": evidence.to_json(), "runtime-data": runtime},
        "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    receipt = sign_receipt(body, key)
    receipt_digest = _write(outputs_dir, "receipt.json", json.dumps(receipt, indent=1).encode())
    ledger.append("receipt.signed", {"body_sha256": body_hash(body), "file_sha256": receipt_digest})
    entries = ledger.entries()  # read once: head, export and the release count below
    head = ledger.head(entries)
    _write(outputs_dir, "ledger-head.json", json.dumps(head.to_json(), indent=1).encode())
    _write(outputs_dir, "ledger.jsonl", to_jsonl(entries).encode())
    say(
        "done",
        job_id=job_id,
        ledger_id=ledger.ledger_id,
        model_id=model_id,
        measurement=measurement,
        micro_accuracy=metrics.micro_accuracy,
        outputs=[o.to_dict() for o in outputs],
        keys_released=sum(
            len(d["resources"]) for d in [e.payload for e in entries if e.kind == "keys.released"]
        ),
    )
    return TrainedJob(
        contract=contract,
        job_id=job_id,
        schema=schema,
        spec=spec,
        model=pooled,
        onnx=onnx,
        model_id=model_id,
        metrics=metrics,
        collaboration=report,
        receipt=receipt,
        ledger=ledger,
        signing_key=key,
        measurement=measurement,
        simulated=simulated,
        outputs=tuple(outputs),
        outputs_dir=outputs_dir,
    )


__all__ = [
    "INSECURE_WARNING",
    "JOB_SETTINGS",
    "OutputFile",
    "Progress",
    "TrainedJob",
    "contract_hyperparameters",
    "feature_spec_for",
    "run_job",
    "spec_from_schema",
]
