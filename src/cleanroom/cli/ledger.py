"""``cleanroom ledger`` — export and verify the enclave's signed audit ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cleanroom.cli import app
from cleanroom.cli._options import (
    DEFAULT_WORKDIR,
    open_workdir_store,
    store_option,
    workdir_option,
)
from cleanroom.contract import VerifyingKey
from cleanroom.contract.keys import load_json_file
from cleanroom.errors import ConfigurationError, ContractError
from cleanroom.ledger import LedgerHead, ledger_ids, read_entries, read_jsonl, verify_ledger
from cleanroom.ledger.entries import to_jsonl

ledger_app = typer.Typer(
    help="The enclave's append-only, hash-chained, signed audit ledger.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")

WorkdirOption = Annotated[Path, workdir_option("Work directory holding the SQLite store.")]
StoreOption = Annotated[str | None, store_option(example=False)]
LedgerIdOption = Annotated[
    str | None, typer.Option("--ledger-id", help="Read this ledger from the store.")
]


def _public_key(path: Path) -> VerifyingKey:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(f"cannot read the public key {str(path)!r}") from None
    try:
        if text.lstrip().startswith("{"):
            document = json.loads(text)
            # A training receipt names the enclave key that signs it and the ledger.
            body = document.get("body") if isinstance(document, dict) else None
            if isinstance(body, dict) and isinstance(body.get("enclave_public_key"), dict):
                document = body["enclave_public_key"]
            return VerifyingKey.from_jwk(document)
        return VerifyingKey.from_pem(text)
    except (ContractError, json.JSONDecodeError):
        raise ConfigurationError(
            f"{str(path)!r} is not an Ed25519/P-256 public key (PEM or JWK)"
        ) from None


@ledger_app.command("verify")
def verify(
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            help="The enclave's public key (PEM or JWK), or the training receipt naming it. "
            "Never taken from the ledger itself.",
        ),
    ],
    file: Annotated[
        Path | None, typer.Argument(help="A JSON Lines export (or use --ledger-id).")
    ] = None,
    head: Annotated[
        Path | None,
        typer.Option("--head", help="A signed head (JSON): detects a truncated tail."),
    ] = None,
    ledger_id: LedgerIdOption = None,
    contract: Annotated[
        Path | None,
        typer.Option(
            "--contract",
            help="A contract (JSON) pinning the brokers' keys: also check every key-release "
            "receipt the ledger records under them.",
        ),
    ] = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Verify chain, sequence and signatures offline; exit 80 naming the first bad seq.

    With --contract, every key release the ledger records must carry a receipt signed by
    that party's broker key (pinned in the contract), for this contract.

    Example: cleanroom ledger verify ledger.jsonl --public-key enclave.pub.pem --head head.json
    """
    key = _public_key(public_key)
    if (file is None) == (ledger_id is None):
        raise ConfigurationError("give a JSON Lines file or --ledger-id (one of them)")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError(f"cannot read {str(file)!r}") from None
        entries = read_jsonl(lines)
    else:
        assert ledger_id is not None
        with open_workdir_store(workdir, store) as opened:
            entries = read_entries(opened, ledger_id)
    signed_head = LedgerHead.from_json(load_json_file(head)) if head is not None else None
    verified = verify_ledger(entries, key, head=signed_head)
    for warning in verified.warnings():
        typer.echo(f"warning: {warning}", err=True)
    covered = "signed head checked" if verified.head_checked else "no signed head: tail unproven"
    typer.echo(
        f"ledger {verified.ledger_id or '?'}: {verified.count} entries verify "
        f"(key sha256:{key.fingerprint[:16]}…, head {verified.head_hash}; {covered})"
    )
    if contract is not None:
        from cleanroom.broker.receipts import check_release_receipts
        from cleanroom.contract import Contract

        try:
            text = contract.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError(f"cannot read {str(contract)!r}") from None
        pinned = Contract.from_json(text)
        checked = check_release_receipts(entries, pinned)
        typer.echo(
            f"{checked} key-release receipts verify under the brokers' keys pinned in "
            f"contract {pinned.hash[:16]}…"
        )


@ledger_app.command("export")
def export(
    ledger_id: Annotated[str, typer.Option("--ledger-id", help="The ledger to export.")],
    out: Annotated[Path, typer.Option("--out", help="JSON Lines output file.")],
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Export a ledger from the store as JSON Lines (unverified: verify the copy).

    Example: cleanroom ledger export --ledger-id job-1 --out ledger.jsonl
    """
    with open_workdir_store(workdir, store) as opened:
        entries = read_entries(opened, ledger_id)  # LedgerError if there is no such ledger
    out.write_text(to_jsonl(entries), encoding="utf-8")
    typer.echo(f"wrote {len(entries)} entries to {out}")


@ledger_app.command("list")
def list_ledgers(workdir: WorkdirOption = DEFAULT_WORKDIR, store: StoreOption = None) -> None:
    """List the ledger ids in the store.

    Example: cleanroom ledger list --workdir cleanroom-work
    """
    with open_workdir_store(workdir, store) as opened:
        for lid in ledger_ids(opened):
            typer.echo(lid)


__all__ = ["ledger_app"]
