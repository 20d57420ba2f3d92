"""``cleanroom model open`` — a recipient opens its sealed model and checks the receipt."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from cleanroom.cli import app
from cleanroom.contract import ContractRegistry
from cleanroom.contract.workdir import PartyKeyFiles, party_dir
from cleanroom.errors import ConfigurationError, ConsentMissing
from cleanroom.store import default_url, open_store

model_app = typer.Typer(help="The model a contract seals to its recipients.", no_args_is_help=True)
app.add_typer(model_app, name="model")

DEFAULT_WORKDIR = Path("cleanroom-work")


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigurationError(f"cannot read {str(path)!r} as JSON") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{str(path)!r} is not a JSON object")
    return value


@model_app.command("open")
def open_(
    party: Annotated[str, typer.Option("--party", help="The recipient party.")],
    contract: Annotated[
        str | None,
        typer.Option("--contract", help="The contract hash (finds <workdir>/outputs/<hash>)."),
    ] = None,
    outputs: Annotated[
        Path | None, typer.Option("--outputs", help="The job's outputs directory.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="Recipient private key (default: parties/<party>/recipient-key.pem)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the ONNX model (mode 0600).")
    ] = None,
    workdir: Annotated[Path, typer.Option("--workdir", help="Work directory.")] = DEFAULT_WORKDIR,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL instead of the SQLite file in the work directory."),
    ] = None,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation", help="Accept a receipt attested by the SIMULATED TEE."
        ),
    ] = False,
    simulation_root: Annotated[
        Path | None,
        typer.Option(
            "--simulation-root",
            help="Simulation root CA (default: <workdir>/sim/simulation-root.pem).",
        ),
    ] = None,
) -> None:
    """Verify the training receipt, open the party's sealed model, check it is the one the
    receipt names, and write it as ONNX.

    Example: cleanroom model open --party hospital_a --contract 3f2a…e9 --out model.onnx
    """
    # The enclave package pulls in the ML stack: import it only when this command runs.
    from cleanroom.enclave import open_model, verify_receipt
    from cleanroom.enclave.outputs import RECEIPT_FILE, default_outputs_dir

    if outputs is None:
        if contract is None:
            raise ConfigurationError("give --contract HASH or --outputs DIR")
        outputs = default_outputs_dir(workdir, contract)
    receipt = _read_json(outputs / RECEIPT_FILE)
    body = receipt.get("body")
    named = body.get("contract_hash") if isinstance(body, dict) else None
    if not isinstance(named, str):
        raise ConfigurationError("the receipt names no contract")
    if contract is not None and contract != named:
        raise ConfigurationError("the receipt in the outputs directory is for another contract")
    roots: list[x509.Certificate] = []
    if insecure_simulation:
        typer.echo("WARNING: accepting a SIMULATED TEE attestation (development only)", err=True)
        root_path = simulation_root or workdir / "sim" / "simulation-root.pem"
        try:
            roots.append(x509.load_pem_x509_certificate(root_path.read_bytes()))
        except (OSError, ValueError):
            raise ConfigurationError(
                f"cannot read the simulation root {str(root_path)!r}"
            ) from None
    elif simulation_root is not None:
        raise ConfigurationError("--simulation-root needs --insecure-simulation")
    if store is None and not workdir.is_dir():
        raise ConfigurationError(f"the work directory {str(workdir)!r} does not exist")
    with open_store(store or default_url(workdir), create=False) as opened:
        registry = ContractRegistry(opened)
        agreed = registry.contract(named)
        # The operator chooses the outputs and the store: trust only a contract this
        # party itself signed (a revocation since then does not unmake its outputs).
        if party not in registry.status(named).signed_by:
            raise ConsentMissing(
                f"{party} has not signed contract {named[:16]}…; refusing its outputs"
            )
    verified = verify_receipt(
        receipt, agreed, trusted_roots=roots, allow_simulation=insecure_simulation
    )
    sealed = outputs / f"model.{party}.jwe.json"
    if not sealed.is_file():
        raise ConfigurationError(f"the outputs hold no sealed model for {party}")
    recipient_key = key or PartyKeyFiles(party_dir(workdir, party)).recipient_key
    opened_model = open_model(sealed, recipient_key, receipt)
    target = out or Path(f"{party}-{opened_model.model_id[:16]}.onnx")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(opened_model.onnx)
    accuracy = verified.metrics.get("micro_accuracy")
    measured = verified.claims.measurement[:16]
    typer.echo(f"receipt      verified (contract {named[:16]}…, measurement {measured}…)")
    if verified.claims.simulated:
        typer.echo("WARNING: the receipt was attested by a SIMULATED TEE", err=True)
    typer.echo(f"model id     {opened_model.model_id}")
    if isinstance(accuracy, float):
        typer.echo(f"accuracy     {accuracy:.4f} (per the signed receipt)")
    typer.echo(f"wrote        {target}")


__all__ = ["model_app"]
