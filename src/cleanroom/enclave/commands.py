"""Enclave commands (registered into :data:`cleanroom.tee.enclave_main.COMMANDS` on import).

``train --contract HASH --store URL --outputs DIR [--broker PARTY=URL ...]
[--verifier-url URL] [--batch-rows N] [--then-serve [--host H] [--port P]]``

Runs :func:`cleanroom.enclave.run_job` and reports on stdout, one JSON line per step, as
``{"event": "job", "step": ..., ...}`` (never a key or a value): ``contract``,
``warning`` (simulated TEE), ``launched``, ``attesting``, ``keys-released``, ``rows``,
``training``, ``evaluating``, ``trained``, ``sealed``, ``done`` — or ``failed`` with the
error's ``kind`` and ``message``, after which the process exits with status 1.

``--then-serve`` hands the trained job to the scoring server after ``done``:
``cleanroom.enclave.scoring.serve_scoring(scoring_model(job), platform, contract=,
ledger=job.ledger, host=, port=)`` — the model never leaves the enclave. It is refused
before any key is fetched when the scoring server is not in the bundle.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.contract import ContractRegistry
from cleanroom.errors import CleanroomError, ConfigurationError, PolicyViolation
from cleanroom.store import open_store
from cleanroom.tee import Platform
from cleanroom.tee.enclave_main import COMMANDS, emit

if TYPE_CHECKING:
    from .job import TrainedJob

#: The enclave event that carries every job step.
JOB_EVENT = "job"
#: Module and function a scoring server provides for ``--then-serve``.
SCORING_MODULE = "cleanroom.enclave.scoring"
SCORING_FUNCTION = "serve_scoring"


def parse_brokers(values: list[str]) -> dict[str, str]:
    """``["party=url", ...]`` -> ``{party: url}``; :class:`ConfigurationError` if malformed."""
    brokers: dict[str, str] = {}
    for value in values:
        party, sep, url = value.partition("=")
        if not sep or not party or not url:
            raise ConfigurationError("--broker takes PARTY=URL")
        brokers[party] = url
    return brokers


def scoring_server() -> Callable[..., Any]:
    """The scoring engineer's ``serve_scoring``; :class:`ConfigurationError` if absent."""
    if importlib.util.find_spec(SCORING_MODULE) is not None:
        module = importlib.import_module(SCORING_MODULE)
        serve = getattr(module, SCORING_FUNCTION, None)
        if callable(serve):
            return serve  # type: ignore[no-any-return]
    raise ConfigurationError("--then-serve: this enclave bundle has no scoring server")


def scoring_model(job: TrainedJob) -> Any:
    """The scoring server's ``ScoringModel`` of a trained job (the model stays in memory)."""
    from cleanroom.enclave.scoring_models import ScoringModel

    return ScoringModel(
        onnx=job.onnx,
        spec=job.spec,
        algorithm=job.model.algorithm,
        metrics=job.metrics.to_dict(),
        featurization=job.model.featurization,
        model_classes=job.model.model_classes,
        receipt=job.receipt,
        schema=job.schema,
    )


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contract", required=True, help="the contract hash")
    parser.add_argument("--store", required=True, help="the store URL (absolute)")
    parser.add_argument("--outputs", required=True, help="directory for sealed outputs")
    parser.add_argument("--broker", action="append", default=[], metavar="PARTY=URL")
    parser.add_argument("--verifier-url", default=None)
    parser.add_argument("--batch-rows", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--then-serve", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)


def _train(platform: Platform, args: Any) -> int:
    def progress(step: str, **fields: Any) -> None:
        emit(JOB_EVENT, step=step, **fields)

    try:
        serve = scoring_server() if args.then_serve else None
        if args.batch_rows is not None and args.batch_rows < 1:
            raise ConfigurationError("--batch-rows must be at least 1")
        if args.workers is not None and args.workers < 1:
            raise ConfigurationError("--workers must be at least 1")
        store = open_store(args.store, create=False)
        try:
            # Refuse a contract that is not in force before loading the ML stack.
            ContractRegistry(store).require_in_force(args.contract)
            from .data import DEFAULT_BATCH_ROWS
            from .job import run_job

            job = run_job(
                platform=platform,
                store=store,
                contract_hash=args.contract,
                outputs_dir=Path(args.outputs),
                brokers=parse_brokers(args.broker),
                verifier_url=args.verifier_url,
                batch_rows=args.batch_rows or DEFAULT_BATCH_ROWS,
                workers=args.workers,
                progress=progress,
            )
            if serve is not None:
                registry = ContractRegistry(store)
                serve(
                    scoring_model(job),
                    platform,
                    contract=job.contract,
                    ledger=job.ledger,
                    host=args.host,
                    port=args.port,
                    # A revocation (veto) stops scoring at the next request.
                    consent=lambda: registry.require_in_force(args.contract),
                )
        finally:
            if serve is None:
                store.close()
    except CleanroomError as error:
        rule = error.rule if isinstance(error, PolicyViolation) else None
        emit(JOB_EVENT, step="failed", kind=type(error).__name__, message=str(error), rule=rule)
        return 1
    return 0


#: The ``train`` enclave command: ``(add_arguments, run)``.
TRAIN_COMMAND = (_train_arguments, _train)

COMMANDS.setdefault("train", TRAIN_COMMAND)

__all__ = ["JOB_EVENT", "TRAIN_COMMAND", "parse_brokers", "scoring_model", "scoring_server"]
