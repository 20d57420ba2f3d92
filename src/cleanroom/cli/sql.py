"""``cleanroom sql`` — run one statement with column encryption and enclave computations."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from cleanroom.cli import app
from cleanroom.cli.keys import PartyOption, StoreOption, WorkdirOption
from cleanroom.errors import ConfigurationError, QueryError


@app.command("sql")
def sql(
    statement: Annotated[str, typer.Argument(help="One SELECT or ALTER TABLE … ALTER COLUMN.")],
    party: PartyOption,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="A parameter value, in order of the ? placeholders, or NAME=VALUE for @NAME "
            "(repeat the option).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows as a JSON array of objects.")
    ] = False,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="Run the enclave on the simulated TEE (INSECURE: the operator sees everything).",
        ),
    ] = False,
    workdir: WorkdirOption = Path("cleanroom-work"),
    store: StoreOption = None,
) -> None:
    """Run one SQL statement on the party's own tables, with column encryption enabled.

    Parameters are encrypted on this machine; predicates, ORDER BY and MIN/MAX on randomized
    columns run in an attested enclave that receives only the keys the statement needs, bound
    to its text. Only the simulated TEE exists here, so such statements need
    --insecure-simulation. Results are decrypted with the party's keys.

    Example: cleanroom sql --party hospital_a "SELECT age FROM MedicalRecords WHERE age > ?"
    --param 60 --insecure-simulation
    """
    from cleanroom.attestation import AttestationPolicy
    from cleanroom.client import Workspace
    from cleanroom.sql import AttestationSettings, QueryEngine, connect, simulated_enclave
    from cleanroom.tee import SimulatedLauncher

    workspace = Workspace(workdir=workdir, store_url=store)
    key_store = workspace.key_store(party)
    opened = workspace.open_store()
    attestation = None
    enclave = None
    if insecure_simulation:
        typer.echo(
            "WARNING: --insecure-simulation: the enclave runs on the simulated TEE", err=True
        )
        launcher = SimulatedLauncher(allow_simulation=True, workdir=Path(workdir) / "simulation")
        enclave, measurement = simulated_enclave(launcher)
        attestation = AttestationSettings(
            policy=AttestationPolicy(
                allow_simulation=True, allowed_measurements=frozenset({measurement})
            ),
            trusted_roots=[launcher.root_certificate],
        )
    engine = QueryEngine(opened, enclave=enclave)
    params = _parameters(param or [])
    try:
        with connect(engine, key_store, party=party, attestation=attestation) as connection:
            cursor = connection.execute(statement, params)
    except QueryError as error:
        if enclave is None and "enclave" in str(error):
            raise QueryError(
                f"{error}; pass --insecure-simulation to use the simulated TEE"
            ) from None
        raise
    finally:
        opened.close()
    names = [d[0] for d in cursor.description or ()]
    rows = cursor.fetchall()
    if not names:
        typer.echo(f"{cursor.rowcount} rows affected")
        return
    if as_json:
        typer.echo(json.dumps([dict(zip(names, map(_jsonable, r), strict=True)) for r in rows]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{party}: {len(rows)} rows (decrypted)")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*("NULL" if v is None else str(_jsonable(v)) for v in row))
    Console(width=200).print(table)


def _parameters(values: list[str]) -> list[str] | dict[str, str]:
    named = [v for v in values if "=" in v and v.split("=", 1)[0].lstrip("@").isidentifier()]
    if named and len(named) != len(values):
        raise ConfigurationError("--param values are either all NAME=VALUE or all positional")
    if named:
        return {k.lstrip("@").lower(): v for k, v in (p.split("=", 1) for p in values)}
    return values


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.date | dt.time):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
