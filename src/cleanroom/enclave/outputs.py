"""The operator's and the recipients' side of the job's outputs.

- :func:`run_contract_job` launches the enclave (simulated TEE) for a contract, runs the
  ``train`` enclave command, streams its progress events and returns a :class:`JobOutcome`
  with the public results: where the sealed outputs are, the signed receipt (with the
  pooled metrics and the model id), measurement, keys released, rows per party.
- :func:`open_model` is a recipient's: open its sealed model with its recipient key and
  check it against the receipt (file digest and model id).

The outputs directory holds only sealed files, ``receipt.json``, ``ledger.jsonl`` and
``ledger-head.json`` — nothing the operator may not read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleanroom import errors
from cleanroom.errors import (
    AttestationError,
    CleanroomError,
    ConfigurationError,
    PolicyViolation,
    TrainingError,
)
from cleanroom.tee import Bundle, EnclaveProcess, SimulatedLauncher

from .commands import JOB_EVENT
from .job import OutputFile
from .sealing import SEALED_FORMAT, RecipientKey, load_recipient_private_key, open_sealed

#: ``progress(event)`` — every ``job`` event of the enclave, as a dict (``step`` and fields).
EventCallback = Callable[[dict[str, Any]], None]

RECEIPT_FILE = "receipt.json"


def default_outputs_dir(workdir: str | Path, contract_hash: str) -> Path:
    """``<workdir>/outputs/<first 16 hex digits of the contract hash>``."""
    return Path(workdir) / "outputs" / contract_hash[:16]


def _load_receipt(outputs_dir: Path) -> dict[str, Any]:
    try:
        receipt = json.loads((outputs_dir / RECEIPT_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigurationError(f"no readable {RECEIPT_FILE} in {str(outputs_dir)!r}") from None
    if not isinstance(receipt, dict):
        raise ConfigurationError(f"{RECEIPT_FILE} is not a JSON object")
    return receipt


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """The public results of one job (no key, no record, nothing sealed opened)."""

    contract_hash: str
    job_id: str
    ledger_id: str
    outputs_dir: Path
    outputs: tuple[OutputFile, ...]
    receipt: Mapping[str, Any] = field(repr=False)
    measurement: str
    simulated: bool
    model_id: str
    metrics: Mapping[str, Any]
    keys_released: int
    rows: Mapping[str, int]
    events: tuple[Mapping[str, Any], ...] = field(repr=False)
    #: With ``serve=True``: the scoring API's URL (RA-TLS) and the running enclave, which
    #: the caller stops (``outcome.enclave.stop()``).
    scoring_url: str | None = None
    enclave: EnclaveProcess | None = field(default=None, repr=False)

    @property
    def receipt_path(self) -> Path:
        """``<outputs_dir>/receipt.json``."""
        return self.outputs_dir / RECEIPT_FILE

    def output(self, kind: str, party: str) -> Path:
        """The sealed file of ``kind`` for ``party`` (:class:`ConfigurationError` if none)."""
        for out in self.outputs:
            if out.kind == kind and out.party == party:
                return self.outputs_dir / out.file
        raise ConfigurationError(f"the contract gives {party} no sealed {kind}")

    def open_json(self, kind: str, party: str, recipient_key: RecipientKey | str | Path) -> Any:
        """Open ``party``'s sealed ``metrics`` or ``collaboration_report`` with its key."""
        key = (
            recipient_key
            if not isinstance(recipient_key, str | Path)
            else load_recipient_private_key(recipient_key)
        )
        envelope = _read_listed(self.output(kind, party), self.receipt)
        return json.loads(open_sealed(envelope, key))


def _read_listed(path: Path, receipt: Mapping[str, Any]) -> dict[str, Any]:
    """The sealed envelope in ``path``, if its bytes are the ones ``receipt`` lists.

    The file is read once: the bytes hashed are the bytes parsed, so a file swapped
    after the check is never the one opened.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read {str(path)!r} ({error.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    listed = [
        o.get("sha256")
        for o in receipt.get("body", {}).get("outputs", [])
        if isinstance(o, Mapping) and o.get("file") == path.name
    ]
    if not listed or not hmac.compare_digest(str(listed[0]), digest):
        raise errors.SignatureInvalid(f"{path.name} is not the file the receipt lists")
    # As sealing.read_envelope, but over the bytes already checked.
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("format") != SEALED_FORMAT:
        raise ConfigurationError(f"{str(path)!r} is not a sealed output file")
    return envelope


@dataclass(frozen=True)
class OpenedModel:
    """A recipient's opened model: the ONNX bytes and its id (SHA-256), checked."""

    onnx: bytes = field(repr=False)
    model_id: str


def open_model(
    path: str | Path, recipient_key: RecipientKey | str | Path, receipt: Mapping[str, Any]
) -> OpenedModel:
    """Open a sealed model and check it against ``receipt`` (verify the receipt first with
    :func:`cleanroom.enclave.verify_receipt`).

    Raises :class:`~cleanroom.errors.DecryptionError` (wrong key, changed byte) or
    :class:`~cleanroom.errors.SignatureInvalid` (not the file or model the receipt names).
    """
    file = Path(path)
    key = (
        recipient_key
        if not isinstance(recipient_key, str | Path)
        else load_recipient_private_key(recipient_key)
    )
    envelope = _read_listed(file, receipt)
    if envelope.get("kind") != "model":
        raise ConfigurationError(f"{file.name} is not a sealed model")
    onnx = open_sealed(envelope, key)
    model_id = hashlib.sha256(onnx).hexdigest()
    expected = str(receipt.get("body", {}).get("model", {}).get("sha256", ""))
    if not hmac.compare_digest(model_id, expected):
        raise errors.SignatureInvalid("the opened model is not the model the receipt names")
    return OpenedModel(onnx=onnx, model_id=model_id)


def _failure(event: Mapping[str, Any]) -> CleanroomError:
    kind, message = str(event.get("kind")), str(event.get("message"))
    if kind == "PolicyViolation":
        rule = str(event.get("rule") or "policy")
        return PolicyViolation(rule, message.removeprefix(f"{rule}: "))
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, CleanroomError) and cls is not PolicyViolation:
        try:
            return cls(message)
        except TypeError:
            pass
    return TrainingError(f"the enclave job failed ({kind}): {message}")


def run_contract_job(
    workdir: str | Path,
    store_url: str,
    contract_hash: str,
    *,
    allow_simulation: bool = False,
    launcher: SimulatedLauncher | None = None,
    bundle: Bundle | None = None,
    outputs_dir: str | Path | None = None,
    brokers: Mapping[str, str] | None = None,
    verifier_url: str | None = None,
    batch_rows: int | None = None,
    progress: EventCallback | None = None,
    timeout: float = 600.0,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
) -> JobOutcome:
    """Launch the enclave for ``contract_hash``, run its training job, return the outcome.

    The brokers (and the verifier, if ``verifier_url``) must already be running. The only
    launcher here is the simulated TEE, so ``allow_simulation=True`` is required (INSECURE:
    development only); ``launcher`` defaults to one whose simulation root CA is kept in
    ``<workdir>/sim`` (give the brokers ``<workdir>/sim/simulation-root.pem``). Outputs go
    to ``outputs_dir`` (default :func:`default_outputs_dir`). ``progress`` receives every
    job event as it arrives. With ``serve=True`` the enclave hands the trained model to the
    scoring API (``train --then-serve``) and keeps running: the outcome carries its
    ``scoring_url`` and the ``enclave`` process, which the caller must stop.

    Raises the enclave's error class (``ConsentMissing``, ``PolicyViolation`` with the
    broker's rule, ``TrainingError`` …) when the job fails, :class:`AttestationError` when
    the enclave dies or says nothing for ``timeout`` seconds.
    """
    if allow_simulation is not True:
        raise ConfigurationError(
            "the only enclave launcher here is the simulated TEE; pass allow_simulation=True "
            "(INSECURE, development only)"
        )
    work = Path(workdir).resolve()
    if store_url.startswith("sqlite:///") and not store_url.startswith("sqlite:////"):
        store_url = f"sqlite:///{(Path(store_url.removeprefix('sqlite:///'))).resolve()}"
    out = Path(outputs_dir) if outputs_dir is not None else default_outputs_dir(work, contract_hash)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if launcher is None:
        launcher = SimulatedLauncher(allow_simulation=True, workdir=work / "sim")
    command = ["train", "--contract", contract_hash, "--store", store_url, "--outputs", str(out)]
    for party, url in (brokers or {}).items():
        command += ["--broker", f"{party}={url}"]
    if verifier_url is not None:
        command += ["--verifier-url", verifier_url]
    if batch_rows is not None:
        command += ["--batch-rows", str(batch_rows)]
    try:
        config_id = bytes.fromhex(contract_hash)
    except ValueError:
        raise ConfigurationError("a contract hash is 64 hex digits") from None
    if serve:
        command += ["--then-serve", "--host", host, "--port", str(port)]
    events: list[dict[str, Any]] = []
    enclave = launcher.launch(command, config_id=config_id, bundle=bundle)
    scoring_url = None
    try:
        while True:
            event = enclave.wait_event(JOB_EVENT, timeout=timeout)
            events.append(event)
            if progress is not None:
                progress(event)
            if event.get("step") == "failed":
                raise _failure(event)
            if event.get("step") == "done":
                break
        if serve:
            ready = enclave.wait_event("ready", timeout=timeout)
            scoring_url = f"https://{ready['host']}:{ready['port']}"
        done = events[-1]
        receipt = _load_receipt(out)
        body = receipt.get("body")
        if not isinstance(body, dict) or body.get("job_id") != done.get("job_id"):
            raise AttestationError("the receipt in the outputs directory is not this job's")
    except BaseException:
        enclave.stop()
        raise
    if not serve:
        enclave.stop()
    return JobOutcome(
        contract_hash=contract_hash,
        job_id=str(done["job_id"]),
        ledger_id=str(done["ledger_id"]),
        outputs_dir=out,
        outputs=tuple(OutputFile(**o) for o in body.get("outputs", [])),
        receipt=receipt,
        measurement=str(body.get("measurement")),
        simulated=bool(body.get("simulated")),
        model_id=str(body.get("model", {}).get("sha256")),
        metrics=dict(body.get("metrics", {})),
        keys_released=int(done.get("keys_released", 0)),
        rows={e["party"]: int(e["rows"]) for e in events if e.get("step") == "rows"},
        events=tuple(events),
        scoring_url=scoring_url,
        enclave=enclave if serve else None,
    )


__all__ = [
    "EventCallback",
    "JobOutcome",
    "OpenedModel",
    "default_outputs_dir",
    "open_model",
    "run_contract_job",
]
