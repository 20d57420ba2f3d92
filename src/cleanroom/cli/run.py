"""``cleanroom run`` — the operator launches the enclave for a contract and waits for the job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cleanroom.cli import app
from cleanroom.errors import ConfigurationError
from cleanroom.store import default_url

DEFAULT_WORKDIR = Path("cleanroom-work")


def _show(event: dict[str, Any]) -> None:
    step = event.get("step")
    fields = {k: v for k, v in event.items() if k not in ("event", "step", "outputs")}
    if step == "warning":
        typer.echo(f"WARNING: {fields.get('message')}", err=True)
        return
    detail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    typer.echo(f"[enclave] {step} {detail}".rstrip())


@app.command("run")
def run(
    contract: Annotated[str, typer.Option("--contract", help="The contract hash to run.")],
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Work directory (store, simulation root, outputs).")
    ] = DEFAULT_WORKDIR,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL instead of the SQLite file in the work directory."),
    ] = None,
    outputs: Annotated[
        Path | None,
        typer.Option(
            "--outputs", help="Directory for sealed outputs (default: <workdir>/outputs/<hash>)."
        ),
    ] = None,
    broker: Annotated[
        list[str] | None,
        typer.Option(
            "--broker", help="PARTY=URL: reach a party's broker here instead of the contract's URL."
        ),
    ] = None,
    verifier_url: Annotated[
        str | None,
        typer.Option(
            "--verifier-url", help="Attest to the brokers with EAR tokens from this verifier."
        ),
    ] = None,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="Run the enclave on the SIMULATED TEE (development only: the operator "
            "can read it).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each step of the job.")
    ] = 600.0,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="After training, keep the model in the enclave and serve the scoring API "
            "(attested TLS) until interrupted.",
        ),
    ] = False,
    host: Annotated[str, typer.Option("--host", help="Scoring address (with --serve).")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", help="Scoring port (with --serve; 0: any free port).")
    ] = 0,
) -> None:
    """Launch the enclave for a contract in force, run its training job, print the outcome.

    The brokers (and the verifier) must be running. Only sealed outputs, the signed receipt
    and the ledger reach the outputs directory.

    With --serve the enclave keeps the model and serves POST /score over attested TLS
    until interrupted.

    Example: cleanroom run --contract 3f2a…e9 --insecure-simulation --serve --port 8443
    """
    # The enclave package pulls in the ML stack: import it only when this command runs.
    from cleanroom.enclave import run_contract_job
    from cleanroom.enclave.commands import parse_brokers

    if not insecure_simulation:
        raise ConfigurationError(
            "no hardware TEE launcher is configured here; --insecure-simulation runs the "
            "simulated TEE (development only)"
        )
    if store is None and not workdir.is_dir():
        raise ConfigurationError(f"the work directory {str(workdir)!r} does not exist")
    typer.echo("WARNING: INSECURE simulated TEE — for development only", err=True)
    outcome = run_contract_job(
        workdir,
        store or default_url(workdir),
        contract,
        allow_simulation=True,
        outputs_dir=outputs,
        brokers=parse_brokers(broker or []),
        verifier_url=verifier_url,
        progress=_show,
        timeout=timeout,
        serve=serve,
        host=host,
        port=port,
    )
    accuracy = outcome.metrics.get("micro_accuracy")
    typer.echo(f"job          {outcome.job_id}")
    typer.echo(f"measurement  {outcome.measurement}{' (SIMULATED)' if outcome.simulated else ''}")
    typer.echo(f"keys         {outcome.keys_released} released")
    typer.echo(f"rows         {', '.join(f'{p}={n}' for p, n in outcome.rows.items())}")
    if isinstance(accuracy, float):
        typer.echo(f"accuracy     {accuracy:.4f} (pooled model, every party's test rows)")
    typer.echo(f"model id     {outcome.model_id}")
    typer.echo(f"ledger       {outcome.ledger_id}")
    typer.echo(f"outputs      {outcome.outputs_dir}")
    for output in outcome.outputs:
        typer.echo(f"  sealed     {output.file}")
    typer.echo(f"receipt      {outcome.receipt_path}")
    if outcome.enclave is not None:
        typer.echo(f"scoring      {outcome.scoring_url}", err=False)
        _serve_until_stopped(outcome.enclave)


def _serve_until_stopped(enclave: Any) -> None:
    """Keep the scoring enclave up until SIGINT/SIGTERM, then stop it (usage is logged)."""
    import signal
    import sys
    import threading

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            if enclave.process.poll() is not None:
                raise ConfigurationError("the scoring enclave exited")
    finally:
        enclave.stop()


__all__ = ["run"]
