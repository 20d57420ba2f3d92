"""``cleanroom data`` — import a party's records encrypted, and show its own data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleanroom.cli import app
from cleanroom.cli.keys import PartyOption, StoreOption, WorkdirOption
from cleanroom.errors import SchemaError, StorageError

if TYPE_CHECKING:
    from cleanroom.client import PartyClient
    from cleanroom.store import DatasetSchema

data = typer.Typer(
    help="A party's dataset: import records (encrypted on this machine) and show them.",
    no_args_is_help=True,
)
app.add_typer(data, name="data")

DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", help="Dataset (table) name; default: the schema's, MedicalRecords."),
]


@data.command("import")
def import_(
    party: PartyOption,
    csv: Annotated[
        Path, typer.Option("--csv", help="CSV file with a header line of column names.")
    ],
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema", help="Dataset schema (.json or .toml); default: built-in MedicalRecord."
        ),
    ] = None,
    workdir: WorkdirOption = Path("cleanroom-work"),
    store: StoreOption = None,
) -> None:
    """Validate a CSV file, encrypt it with the party's keys and load it in one transaction.

    The whole file is checked first; a bad value is reported by line and column (never
    quoting an encrypted column's value) and nothing is written. The table is created on
    the first import.

    Example: cleanroom data import --party hospital_a --csv data/hospital_a.csv
    """
    from cleanroom.client import Workspace
    from cleanroom.store import DatasetSchema, medical_record_schema

    wanted = DatasetSchema.from_file(schema) if schema is not None else medical_record_schema()
    with (
        Workspace(workdir=workdir, store_url=store) as workspace,
        workspace.client(party) as client,
    ):
        _import_into(client, party, wanted, csv, custom=schema is not None)


def _import_into(
    client: PartyClient, party: str, wanted: DatasetSchema, csv: Path, *, custom: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:
        existing = client.dataset(wanted.table)
    except StorageError:
        existing = client.create_dataset(wanted)
    if custom and existing.schema != wanted.with_default_cek(client.default_cek_name):
        raise SchemaError(
            f"party {party!r} already has a dataset {wanted.table!r} with a different schema"
        )
    with Progress(
        TextColumn("encrypting and loading"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=not _interactive(),
    ) as bar:
        task = bar.add_task("import", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        count = client.import_csv(csv, dataset=existing.name, progress=progress)
    encrypted = sum(1 for c in existing.schema.columns if c.encrypted)
    typer.echo(
        f"imported {count} rows into {existing.table_name} "
        f"({encrypted} of {len(existing.schema.columns)} columns encrypted)"
    )


@data.command("show")
def show(
    party: PartyOption,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to show.")] = 10,
    dataset: DatasetOption = None,
    workdir: WorkdirOption = Path("cleanroom-work"),
    store: StoreOption = None,
) -> None:
    """Show the first rows of the party's own dataset, decrypted with its own keys.

    Only the party's own tables are readable: another party's cells do not decrypt
    under this party's keys.

    Example: cleanroom data show --party hospital_a --limit 5
    """
    from cleanroom.client import Workspace
    from cleanroom.store import MEDICAL_RECORD_TABLE

    name = dataset or MEDICAL_RECORD_TABLE
    with (
        Workspace(workdir=workdir, store_url=store) as workspace,
        workspace.client(party) as client,
    ):
        _show(client, party, name, limit)


def _show(client: PartyClient, party: str, name: str, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    try:
        info = client.dataset(name)
    except StorageError:
        raise StorageError(
            f"party {party!r} has no dataset {name!r} in this store "
            f"(import one with: cleanroom data import --party {party} --csv FILE)"
        ) from None
    rows = client.read(name, limit=limit)
    total = client.store.count(info)
    table = Table(title=f"{party}: {info.name} ({len(rows)} of {total} rows, decrypted)")
    for spec in info.schema.columns:
        table.add_column(spec.name + (" 🔒" if spec.encrypted else ""), justify="right")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in info.schema.column_names))
    Console(width=200).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()
