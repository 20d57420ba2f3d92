"""``cleanroom keys`` — a party's column master key and column encryption key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cleanroom.cli import app
from cleanroom.cli._options import DEFAULT_WORKDIR, workdir_option
from cleanroom.cli._options import StoreOption as StoreOption  # data.py and sql.py use it

keys = typer.Typer(
    help="A party's keys: a column master key in its key store, a column encryption key "
    "wrapped by it in the store.",
    no_args_is_help=True,
)
app.add_typer(keys, name="keys")

PartyOption = Annotated[str, typer.Option("--party", help="The party (data owner) name.")]
WorkdirOption = Annotated[
    Path, workdir_option("Work directory: SQLite store and local key stores (keys/<party>).")
]


@keys.command("create")
def create(
    party: PartyOption,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
    enclave: Annotated[
        bool,
        typer.Option(
            "--enclave/--no-enclave",
            help="Allow enclave computations with this key (signs the CMK metadata).",
        ),
    ] = True,
) -> None:
    """Create the party's column master key (local key store) and column encryption key.

    The CMK is an RSA-2048 key in <workdir>/keys/<party>/ (mode 0600); the store gets its
    metadata and the CEK wrapped by it, never a key.

    Example: cleanroom keys create --party hospital_a
    """
    from cleanroom.client import Workspace

    with (
        Workspace(workdir=workdir, store_url=store) as workspace,
        workspace.client(party, create_key_store=True) as client,
    ):
        created = client.create_keys(allow_enclave_computations=enclave)
    kind = "enclave-enabled" if enclave else "not enclave-enabled"
    typer.echo(
        f"party {party}: column master key {created.column_master_key} "
        f"({created.key_store_provider_name}:{created.key_path}, {kind}) in "
        f"{workspace.key_directory(party)}; column encryption key "
        f"{created.column_encryption_key} wrapped in {client.store!r}"
    )
