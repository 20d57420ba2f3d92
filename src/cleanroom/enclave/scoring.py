"""Scoring inside the enclave: the article's Web API over attested TLS, under the contract.

The article's ``POST`` retrained the model on every request; here the trained model stays
in the enclave and each request only scores. Endpoints (JSON; errors are RFC 7807
``application/problem+json`` objects, never a stack trace)::

    POST /score         one record (the article's MedicalRecord)  -> {"score", "accuracy",
                        "predictedClass", "probabilities", "modelId"}
    POST /score/batch   {"records": [...]}                        -> {"modelId", "accuracy",
                                                                      "results": [...]}
    GET  /model         model id, algorithm, metrics, receipt (signed request, no quota)
    GET  /healthz       {"status": "ok"} (no authentication)
    GET  /openapi.json  the API, with the request model generated from the schema

Order of checks: body size (413) → signature (401, :mod:`cleanroom.enclave.scoring_auth`)
→ contract policy: the party is a scoring caller and the contract has not expired (403)
→ body validation (422, field by field) → the daily quota (429) → scoring.

Nothing about a record is logged or written to the ledger: the ledger gets counts per
party per window (:class:`~cleanroom.enclave.scoring_auth.UsageMeter`).
"""

import argparse
import datetime as dt
import json
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Final

from cleanroom.contract.model import Contract
from cleanroom.enclave.scoring_auth import (
    Refusal,
    RequestAuthenticator,
    UsageLedger,
    UsageMeter,
)
from cleanroom.enclave.scoring_models import (
    OnnxScorer,
    Scores,
    ScoringModel,
    batch_model,
    record_model,
)
from cleanroom.errors import ConfigurationError, ConsentMissing, ScoringError
from cleanroom.tee._base import Platform

_log = logging.getLogger(__name__)

_BODY_KEY: Final = "cleanroom.body"
_USAGE_TICK_SECONDS: Final = 60.0
PROBLEM_PREFIX: Final = "https://cleanroom.invalid/problems/scoring/"
#: Largest accepted request body (bytes) unless configured otherwise.
DEFAULT_MAX_BODY: Final = 1024 * 1024
#: Most records in one ``/score/batch`` call unless configured otherwise.
DEFAULT_MAX_BATCH: Final = 1000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _problem_bytes(status: int, kind: str, detail: str, **extra: Any) -> bytes:
    body = {
        "type": PROBLEM_PREFIX + kind,
        "title": kind,
        "status": status,
        "detail": detail,
        **extra,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class _Guard:
    """ASGI middleware: reads at most ``limit`` body bytes (else 413), and turns any
    exception that escapes the app into a 500 problem, logging only its type."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # The exact bytes, for the signature check wherever it runs (see _invalid).
        scope[_BODY_KEY] = body
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, replay, tracked)
        except Exception as error:  # noqa: BLE001 -- the last line of defence: no traceback
            _log.error("scoring request failed (%s)", type(error).__name__)
            if not started:
                await self._respond(send, 500, "internal", "the enclave could not answer")

    async def _too_large(self, send: Send) -> None:
        await self._respond(send, 413, "too-large", f"the body exceeds {self._limit} bytes")

    async def _respond(self, send: Send, status: int, kind: str, detail: str) -> None:
        body = _problem_bytes(status, kind, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_scoring_app(
    model: ScoringModel,
    *,
    contract: Contract,
    ledger: UsageLedger | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_skew: dt.timedelta = dt.timedelta(seconds=60),
    usage_window: dt.timedelta = dt.timedelta(hours=1),
    consent: Callable[[], object] | None = None,
) -> Any:
    """The scoring API (a FastAPI app) for ``model`` under ``contract``'s scoring policy.

    ``ledger`` receives ``scoring.usage`` entries (counts per party per window); ``clock``
    is the time source (UTC; tests pass a fixed one). ``consent`` is called before every
    request and raises :class:`~cleanroom.errors.ConsentMissing` once the contract is no
    longer in force (a party revoked): the veto stops scoring at the next request.
    Returns the ASGI app; its ``state.usage`` is the :class:`UsageMeter` (call
    ``flush()`` on shutdown).

    Example::

        app = create_scoring_app(model, contract=contract, ledger=ledger)
        serve_attested(app, platform, host="0.0.0.0", port=8443)
    """
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    if not 1 <= max_batch <= 100_000:
        raise ConfigurationError("max_batch must be between 1 and 100000")
    if max_body_bytes < 1024:
        raise ConfigurationError("max_body_bytes must be at least 1024")
    now: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))
    scorer = OnnxScorer(model)
    authenticator = RequestAuthenticator(contract, max_skew=max_skew)
    usage = UsageMeter(
        contract, model_id=model.model_id, ledger=ledger, window=usage_window, clock=now
    )
    decimals = contract.scoring.probability_decimals
    record = record_model(model)
    batch = batch_model(record, max_records=max_batch)
    labels = [str(c) for c in model.classes]
    accuracy = model.accuracy_percent

    app = FastAPI(
        title="cleanroom scoring",
        version="1",
        description="Scores records with the model trained in the enclave, under the "
        "contract's scoring policy. Requests are signed by a contract party "
        "(Cleanroom-Party, -Timestamp, -Nonce, -Signature headers); see docs/scoring.md.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.usage = usage

    def problem(refusal: Refusal) -> JSONResponse:
        headers = {}
        if refusal.retry_after is not None:
            headers["Retry-After"] = str(refusal.retry_after)
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Cleanroom-Signature realm="scoring"'
        return JSONResponse(
            json.loads(_problem_bytes(refusal.status, refusal.kind, refusal.detail)),
            status_code=refusal.status,
            media_type="application/problem+json",
            headers=headers,
        )

    @app.exception_handler(Refusal)
    async def _refused(request: Request, refusal: Refusal) -> JSONResponse:
        _log.info("scoring request refused: %s %s", refusal.status, refusal.kind)
        return problem(refusal)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if getattr(request.state, "party", None) is None:
            # FastAPI parses JSON before it runs dependencies: authorize first anyway, so
            # that a stranger learns nothing about what the enclave accepts.
            try:
                await caller(request)
            except Refusal as refusal:
                return problem(refusal)
        # Locations and messages only: pydantic would echo the submitted values.
        errors = [
            {
                "loc": [part for part in item.get("loc", ()) if part != "body"],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
            for item in error.errors()
        ]
        body = json.loads(
            _problem_bytes(422, "invalid-record", "the record does not match the schema")
        )
        body["errors"] = errors[:50]
        return JSONResponse(body, status_code=422, media_type="application/problem+json")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "error")
        return problem(Refusal(error.status_code, kind, str(error.detail)))

    async def caller(request: Request) -> str:
        body = request.scope.get(_BODY_KEY)
        if not isinstance(body, bytes):
            body = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        moment = now()
        party = authenticator.authenticate(
            method=request.method, path=path, body=body, headers=request.headers, now=moment
        )
        if usage.quota(party) is None:
            raise Refusal(403, "forbidden", "the contract does not let this party score")
        if contract.is_expired(moment):
            raise Refusal(403, "forbidden", "the contract has expired")
        if consent is not None:
            try:
                consent()
            except ConsentMissing as error:
                raise Refusal(
                    403, "forbidden", f"the contract is no longer in force ({error})"
                ) from None
        request.state.party = party
        return party

    def run(party: str, rows: list[dict[str, Any]]) -> Scores:
        usage.consume(party, len(rows), now())
        try:
            return scorer.score(rows)
        except ScoringError as error:
            _log.error("scoring failed: %s", error)
            raise Refusal(500, "scoring-failed", "the model could not score the request") from None

    def result(scores: Scores, index: int) -> dict[str, Any]:
        predicted = scores.predicted[index]
        row = scores.probabilities[index]
        return {
            "score": predicted,
            "accuracy": accuracy,
            "predictedClass": predicted,
            "probabilities": {
                label: round(float(p), decimals) for label, p in zip(labels, row, strict=True)
            },
            "modelId": model.model_id,
        }

    @app.post(
        "/score",
        summary="Score one record",
        responses={401: {}, 403: {}, 413: {}, 422: {}, 429: {}},
    )
    async def score(body: record, party: str = Depends(caller)) -> dict[str, Any]:  # type: ignore[valid-type]
        """The article's answer (``score``, ``accuracy``) plus class, probabilities, model id."""
        scores = run(party, [body.model_dump(by_alias=True)])  # type: ignore[attr-defined]
        return result(scores, 0)

    @app.post(
        "/score/batch",
        summary="Score many records",
        responses={401: {}, 403: {}, 413: {}, 422: {}, 429: {}},
    )
    def score_batch(body: batch, party: str = Depends(caller)) -> dict[str, Any]:  # type: ignore[valid-type]
        """One result per record, in order; the whole batch counts against the quota."""
        rows = [r.model_dump(by_alias=True) for r in body.records]  # type: ignore[attr-defined]
        scores = run(party, rows)
        return {
            "modelId": model.model_id,
            "accuracy": accuracy,
            "results": [result(scores, i) for i in range(len(rows))],
        }

    @app.get("/model", summary="The served model", responses={401: {}, 403: {}})
    async def describe(party: str = Depends(caller)) -> dict[str, Any]:
        """Model id, algorithm, classes, metrics and training receipt (no quota used)."""
        return {
            "modelId": model.model_id,
            "algorithm": model.algorithm,
            "featurization": model.featurization,
            "classes": list(model.classes),
            "accuracy": accuracy,
            "metrics": dict(model.metrics),
            "receipt": None if model.receipt is None else dict(model.receipt),
            "contractHash": contract.hash,
            "probabilityDecimals": decimals,
        }

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """``{"status": "ok"}``."""
        return {"status": "ok"}

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette answers with this, then re-raises to _Guard (which logs the type only).
        return problem(Refusal(500, "internal", "the enclave could not answer"))

    return _Guard(app, max_body_bytes)


def scoring_fastapi(app: Any) -> Any:
    """The FastAPI app inside what :func:`create_scoring_app` returned (for its ``state``)."""
    return getattr(app, "_app", app)


def serve_scoring(
    model: ScoringModel,
    platform: Platform,
    *,
    contract: Contract,
    ledger: UsageLedger | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    consent: Callable[[], object] | None = None,
) -> None:
    """Serve :func:`create_scoring_app` over attested TLS until terminated, then flush usage.

    For the training job to hand over after training: the model never leaves the enclave.
    Emits the enclave ``ready`` event (``cleanroom.tee.enclave_main.serve_attested``).
    """
    from cleanroom.tee.enclave_main import serve_attested

    app = create_scoring_app(model, contract=contract, ledger=ledger, consent=consent)
    usage = scoring_fastapi(app).state.usage
    stop = threading.Event()

    def close_windows() -> None:
        while not stop.wait(_USAGE_TICK_SECONDS):
            usage.close_ended()

    threading.Thread(target=close_windows, name="scoring-usage", daemon=True).start()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the
    # handler it found: make that handler end the server here so the usage gets written.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        serve_attested(app, platform, host=host, port=port)
    except _Terminated:
        pass
    finally:
        stop.set()
        if main:
            signal.signal(signal.SIGTERM, previous)
        usage.flush()


class _Terminated(Exception):
    """SIGTERM reached the scoring server."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


# -- the enclave command ----------------------------------------------------------------


def _own_config_id(platform: Platform) -> str | None:
    """The config id the platform reports for this enclave (hex), read from fresh evidence."""
    evidence = platform.evidence(b"\0" * 64)
    if platform.tee == "simulated":
        from cleanroom.tee.simulated import decode_simulated_evidence

        config_id = decode_simulated_evidence(evidence.raw).report.config_id
        return None if config_id is None else config_id.hex()
    raise ConfigurationError(
        "serve-model reads its config id from simulated evidence only so far; "
        "on hardware TEEs hand the model over in-process with serve_scoring()"
    )


def _serve_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="model.onnx + model.json")
    parser.add_argument("--contract", required=True, help="the contract JSON file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", default=None, help="store URL of the usage ledger")
    parser.add_argument("--ledger-id", default=None)


def _serve_model(platform: Platform, args: Any) -> int:
    from cleanroom.tee.enclave_main import emit

    contract = Contract.from_json(Path(args.contract).read_bytes())
    # The operator supplies the contract file: serve only the one the TEE was launched
    # for (its config id), which is also what clients require of the attestation.
    config_id = _own_config_id(platform)
    if config_id != contract.hash:
        raise ConfigurationError("the contract file is not the contract this enclave runs for")
    model = ScoringModel.load(args.model_dir)
    ledger = None
    if args.store is not None:
        from cleanroom.contract.keys import SigningKey
        from cleanroom.ledger import Ledger
        from cleanroom.store import open_store

        key = SigningKey.generate()
        store = open_store(args.store)
        ledger = Ledger.create(
            store,
            key,
            ledger_id=args.ledger_id,
            genesis={"contract_hash": contract.hash, "model_id": model.model_id},
        )
        emit("ledger", ledger_id=ledger.ledger_id, public_key=key.public_key.to_jwk())
    emit("model", model_id=model.model_id, contract_hash=contract.hash)
    serve_scoring(model, platform, contract=contract, ledger=ledger, host=args.host, port=args.port)
    return 0


#: The ``serve-model`` enclave command (``cleanroom.tee.enclave_main.COMMANDS`` entry).
ENCLAVE_COMMAND = (_serve_model_args, _serve_model)


def _register() -> None:
    from cleanroom.tee import enclave_main

    enclave_main.COMMANDS.setdefault("serve-model", ENCLAVE_COMMAND)


_register()

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY",
    "ENCLAVE_COMMAND",
    "PROBLEM_PREFIX",
    "create_scoring_app",
    "scoring_fastapi",
    "serve_scoring",
]
