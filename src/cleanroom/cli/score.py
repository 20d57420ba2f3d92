"""``cleanroom score`` — score records with the model inside an attested enclave."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cleanroom.cli import app
from cleanroom.client import DEFAULT_WORKDIR
from cleanroom.errors import ConfigurationError


def _cell(text: str) -> Any:
    """A CSV cell as JSON would give it: null, a boolean, an integer, a number or text."""
    value = text.strip()
    if value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            continue
    return value


def records_from_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header line, cells typed as in :func:`_cell`."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [
                {name: _cell(value or "") for name, value in row.items() if name is not None}
                for row in csv.DictReader(handle)
            ]
    except OSError as error:
        raise ConfigurationError(f"cannot read {str(path)!r} ({error.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise ConfigurationError(f"{str(path)!r} is not a UTF-8 CSV file") from None


@app.command("score")
def score(
    party: Annotated[str, typer.Option("--party", help="Your party name in the contract.")],
    url: Annotated[str, typer.Option("--url", help="The enclave's https:// scoring URL.")],
    record: Annotated[
        str | None, typer.Option("--record", help="One record as a JSON object.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="A CSV file of records (header line first).")
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Work directory with the contract and party keys.")
    ] = DEFAULT_WORKDIR,
    contract_file: Annotated[
        Path | None,
        typer.Option("--contract", help="Contract JSON file (default: <workdir>/contract.json)."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Private signing key (default: <workdir>/parties/<party>/signing-key.pem).",
        ),
    ] = None,
    expected_model_id: Annotated[
        str | None,
        typer.Option("--model-id", help="Refuse any model but this one (hex SHA-256)."),
    ] = None,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="INSECURE: accept a simulated TEE (development only; the contract must allow it).",
        ),
    ] = False,
    simulation_root: Annotated[
        Path | None,
        typer.Option(help="PEM of the simulation root CA (needs --insecure-simulation)."),
    ] = None,
) -> None:
    """Attest the enclave against the contract, then score one record or a CSV file.

    Prints one JSON object per record (JSON Lines). Nothing is sent unless the enclave's
    measurement is one the contract lists.

    Example: cleanroom score --party hospital_a --url https://10.0.0.5:8443
    --record '{"age": 63, "sex": 1, "smoker": false, "chestPain": 4, "bloodPressure": 145,
    "serumCholestoral": 233, "fastingBloodSugar": true, "maxHeartRate": 150}'
    """
    from cryptography import x509

    from cleanroom.client import ScoringClient
    from cleanroom.contract import Contract, SigningKey
    from cleanroom.contract.workdir import PartyKeyFiles, contract_path, party_dir

    if (record is None) == (csv_file is None):
        raise ConfigurationError("give exactly one of --record and --csv")
    if simulation_root is not None and not insecure_simulation:
        raise ConfigurationError("--simulation-root needs --insecure-simulation")
    if record is not None:
        try:
            parsed = json.loads(record)
        except json.JSONDecodeError:
            raise ConfigurationError("--record is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ConfigurationError("--record must be a JSON object")
        records = [parsed]
    else:
        assert csv_file is not None
        records = records_from_csv(csv_file)
        if not records:
            raise ConfigurationError(f"{str(csv_file)!r} holds no records")
    source = contract_file or contract_path(workdir)
    try:
        contract = Contract.from_json(source.read_bytes())
    except OSError as error:
        raise ConfigurationError(f"cannot read {str(source)!r} ({error.strerror})") from None
    signing_key = SigningKey.load(key or PartyKeyFiles(party_dir(workdir, party)).signing_key)
    roots = []
    if simulation_root is not None:
        try:
            roots.append(x509.load_pem_x509_certificate(simulation_root.read_bytes()))
        except (OSError, ValueError):
            raise ConfigurationError(
                "--simulation-root is not a readable PEM certificate"
            ) from None
    with ScoringClient(
        url,
        contract=contract,
        party=party,
        signing_key=signing_key,
        trusted_roots=roots,
        insecure_simulation=insecure_simulation,
        expected_model_id=expected_model_id,
    ) as client:
        results = [client.score(records[0])] if record is not None else client.score_batch(records)
    for result in results:
        typer.echo(json.dumps(result, sort_keys=True))
