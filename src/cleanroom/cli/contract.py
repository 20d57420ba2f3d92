"""``cleanroom contract`` — draft, sign, check and revoke the collaboration contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cleanroom.cli import app
from cleanroom.cli._options import (
    DEFAULT_WORKDIR,
    StoreOption,
    open_workdir_store,
    workdir_option,
)
from cleanroom.contract import (
    Approval,
    Contract,
    ContractRegistry,
    ContractStatus,
    SigningKey,
    sign_approval,
    sign_revocation,
)
from cleanroom.contract.keys import load_json_file
from cleanroom.contract.model import METRICS
from cleanroom.contract.workdir import (
    PartyKeyFiles,
    contract_path,
    discover_parties,
    draft_contract,
    generate_party_keys,
    party_dir,
)
from cleanroom.errors import ConfigurationError, ConsentMissing, ContractError

contract_app = typer.Typer(
    help="The collaboration contract: every party signs its hash; any party may veto.",
    no_args_is_help=True,
)
app.add_typer(contract_app, name="contract")

WorkdirOption = Annotated[
    Path, workdir_option("Work directory: SQLite store, party key files, contract.")
]
ContractOption = Annotated[
    Path | None,
    typer.Option("--contract", help="Contract JSON file (default: <workdir>/contract.json)."),
]
HashOption = Annotated[
    str | None,
    typer.Option("--hash", help="Address a contract already in the store by its hash."),
]
PartyOption = Annotated[str, typer.Option("--party", help="The signing party's name.")]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key", help="Private signing key (default: <workdir>/parties/<party>/signing-key.pem)."
    ),
]


def _load_file(workdir: Path, path: Path | None) -> Contract:
    source = path or contract_path(workdir)
    try:
        text = source.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read {str(source)!r} ({error.strerror})") from None
    return Contract.from_json(text)


def _resolve(registry: ContractRegistry, workdir: Path, path: Path | None, h: str | None) -> str:
    if h is not None:
        if path is not None:
            raise ConfigurationError("give --contract or --hash, not both")
        return registry.contract(h).hash
    return registry.submit(_load_file(workdir, path))


def _key(workdir: Path, party: str, key: Path | None) -> SigningKey:
    return SigningKey.load(key or PartyKeyFiles(party_dir(workdir, party)).signing_key)


def _echo_status(status: ContractStatus) -> None:
    typer.echo(f"contract  {status.contract_id} v{status.version}")
    typer.echo(f"hash      {status.contract_hash}")
    typer.echo(f"parties   {', '.join(status.parties)}")
    typer.echo(f"signed    {', '.join(status.signed_by) or '-'}")
    typer.echo(f"missing   {', '.join(status.missing) or '-'}")
    typer.echo(f"revoked   {', '.join(status.revoked_by) or '-'}")
    if status.invalid:
        typer.echo(f"INVALID   {', '.join(status.invalid)} (stored records do not verify)")
    typer.echo(f"expired   {'yes' if status.expired else 'no'}")
    typer.echo(f"in force  {'yes' if status.in_force else 'no'}")


@contract_app.command("keygen")
def keygen(
    party: PartyOption,
    algorithm: Annotated[
        str, typer.Option("--algorithm", help="Signing algorithm: ed25519 or p256.")
    ] = "ed25519",
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Create a party's signing, recipient (sealed outputs) and broker key pairs.

    Files go to <workdir>/parties/<party>/ (private keys mode 0600, never overwritten).
    The broker key signs the party's broker tokens and release receipts; its public key
    is pinned in contracts drafted with 'cleanroom contract init'.

    Example: cleanroom contract keygen --party hospital_a --algorithm p256
    """
    if algorithm not in ("ed25519", "p256"):
        raise ConfigurationError("--algorithm must be ed25519 or p256")
    workdir.mkdir(parents=True, exist_ok=True)
    files = generate_party_keys(workdir, party, algorithm=algorithm)  # type: ignore[arg-type]
    public = SigningKey.load(files.signing_key).public_key
    typer.echo(f"party {party}: {public.algorithm} signing key sha256:{public.fingerprint}")
    typer.echo(f"keys in {files.directory}")


@contract_app.command("init")
def init(
    party: Annotated[
        list[str] | None,
        typer.Option("--party", help="A party (repeat). Default: every party with key files."),
    ] = None,
    broker: Annotated[
        list[str] | None,
        typer.Option("--broker", help="NAME=URL of a party's key broker (repeat)."),
    ] = None,
    contract_id: Annotated[str, typer.Option("--id", help="Contract id.")] = "cleanroom",
    title: Annotated[str, typer.Option("--title", help="Contract title.")] = (
        "Pooled multiclass model"
    ),
    algorithm: Annotated[
        str,
        typer.Option(
            "--algorithm", help="multinomial_logistic_regression or gradient_boosted_trees."
        ),
    ] = "multinomial_logistic_regression",
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", help="A feature column (repeat). Default: the schema's."),
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Label column. Default: the schema's.")
    ] = None,
    train_fraction: Annotated[float, typer.Option("--train-fraction")] = 0.8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    min_rows: Annotated[int, typer.Option("--min-rows", help="Minimum rows per party.")] = 50,
    measurement: Annotated[
        list[str] | None,
        typer.Option("--measurement", help="Approved enclave measurement, hex (repeat)."),
    ] = None,
    tee: Annotated[
        list[str] | None,
        typer.Option("--tee", help="Accepted TEE type: sev-snp, tdx, sgx (repeat)."),
    ] = None,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="Accept the simulated TEE (development only; measures this package "
            "when no --measurement is given).",
        ),
    ] = False,
    valid_days: Annotated[int, typer.Option("--valid-days")] = 90,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default <workdir>/contract.json).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Draft a contract JSON for N parties from their key files in the work directory.

    Every party contributes the built-in medical_record dataset, receives the sealed
    model, every metric and the collaboration report, and may score 1,000 times a day;
    edit the file before anyone signs.

    Example: cleanroom contract init --broker hospital_a=https://a.example:8443
    --broker hospital_b=https://b.example:8443 --tee sev-snp --measurement 5f3a...
    """
    from cleanroom.store import MEDICAL_RECORD_TABLE, medical_record_schema

    parties = list(party or discover_parties(workdir))
    urls: dict[str, str] = {}
    for item in broker or []:
        name, sep, url = item.partition("=")
        if not sep:
            raise ConfigurationError("--broker takes NAME=URL")
        urls[name] = url
    for index, name in enumerate(parties):
        urls.setdefault(name, f"http://127.0.0.1:{8601 + index}")
    schema = medical_record_schema()
    label_column = label or schema.label
    if label_column is None:
        raise ConfigurationError("the schema has no label: give --label")
    features = list(feature or [c for c in schema.column_names if c != label_column])
    tee_types = list(tee or [])
    measurements = list(measurement or [])
    if insecure_simulation:
        tee_types.append("simulated")
        if not measurements:
            measurements.append(_package_measurement())
    if not tee_types:
        raise ConfigurationError("give --tee (sev-snp, tdx, sgx) or --insecure-simulation")
    if not measurements:
        raise ConfigurationError("give at least one --measurement of the approved enclave")
    contract = draft_contract(
        workdir,
        parties=parties,
        brokers=urls,
        contract_id=contract_id,
        title=title,
        algorithm={
            "name": algorithm,
            "features": features,
            "label": label_column,
            "split": {"train_fraction": train_fraction, "seed": seed},
            "metrics": list(METRICS),
        },
        enclave={
            "tee_types": tee_types,
            "reference_measurements": measurements,
            "allow_simulation": insecure_simulation,
        },
        dataset=(MEDICAL_RECORD_TABLE, "medical_record", min_rows),
        valid_days=valid_days,
    )
    target = out or contract_path(workdir)
    if target.exists() and not force:
        raise ConfigurationError(f"{str(target)!r} exists (use --force to overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(contract.to_json())
    if insecure_simulation:
        typer.echo("warning: this contract accepts the simulated TEE (insecure)", err=True)
    typer.echo(f"wrote {target}")
    typer.echo(f"hash  {contract.hash}")


def _package_measurement() -> str:
    import tempfile

    from cleanroom.tee import build_bundle
    from cleanroom.tee.bundle import default_lock_file

    with tempfile.TemporaryDirectory() as tmp:
        return build_bundle(Path(tmp) / "bundle", lock_file=default_lock_file()).measurement


@contract_app.command("show")
def show(
    contract: ContractOption = None,
    contract_hash: HashOption = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Print the contract (normalized JSON), its hash and its signing status.

    Example: cleanroom contract show --contract cleanroom-work/contract.json
    """
    with open_workdir_store(workdir, store) as opened:
        registry = ContractRegistry(opened)
        if contract_hash is not None:
            document = registry.contract(contract_hash)
        else:
            document = _load_file(workdir, contract)
        typer.echo(json.dumps(document.document(), indent=2, ensure_ascii=False))
        try:
            status = registry.status(document.hash)
        except ContractError:
            typer.echo(f"hash      {document.hash}")
            typer.echo("status    not in the store yet (signing submits it)")
            return
        _echo_status(status)


@contract_app.command("submit")
def submit(
    contract: ContractOption = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Store the contract in the registry without signing it (idempotent).

    Example: cleanroom contract submit --contract cleanroom-work/contract.json
    """
    with open_workdir_store(workdir, store) as opened:
        typer.echo(ContractRegistry(opened).submit(_load_file(workdir, contract)))


@contract_app.command("sign")
def sign(
    party: PartyOption,
    key: KeyOption = None,
    contract: ContractOption = None,
    contract_hash: HashOption = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Sign the contract's hash as PARTY (the key must be the one the contract names).

    Example: cleanroom contract sign --party hospital_a --key hospital_a/signing-key.pem
    """
    with open_workdir_store(workdir, store) as opened:
        registry = ContractRegistry(opened)
        h = _resolve(registry, workdir, contract, contract_hash)
        registry.sign(h, party, _key(workdir, party, key))
        status = registry.status(h)
    typer.echo(f"party {party} signed {h}")
    typer.echo(
        "in force" if status.in_force else f"waiting for: {', '.join(status.missing) or '-'}"
    )


@contract_app.command("approve")
def approve(
    party: PartyOption,
    key: KeyOption = None,
    contract: ContractOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the approval JSON here (default: stdout).")
    ] = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Sign the contract file as PARTY offline, without the store: prints an approval JSON.

    Hand it to whoever runs the store, who records it with `contract add-signature`.

    Example: cleanroom contract approve --party hospital_a --out hospital_a.approval.json
    """
    document = _load_file(workdir, contract)
    approval = sign_approval(document, party, _key(workdir, party, key))
    text = json.dumps(approval.to_json(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


@contract_app.command("add-signature")
def add_signature(
    approval: Annotated[Path, typer.Option("--approval", help="An approval JSON file.")],
    contract: ContractOption = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Verify a party's approval JSON and record it (submitting the contract file if needed).

    Example: cleanroom contract add-signature --approval hospital_a.approval.json
    """
    record = Approval.from_json(load_json_file(approval))
    with open_workdir_store(workdir, store) as opened:
        registry = ContractRegistry(opened)
        if not _is_stored(registry, record.contract_hash):
            document = _load_file(workdir, contract)
            if document.hash != record.contract_hash:
                raise ContractError("the approval is for another contract than the file's")
            registry.submit(document)
        registry.add_signature(record.contract_hash, record.party, record.signature)
        status = registry.status(record.contract_hash)
    typer.echo(f"party {record.party} signed {record.contract_hash}")
    typer.echo(
        "in force" if status.in_force else f"waiting for: {', '.join(status.missing) or '-'}"
    )


def _is_stored(registry: ContractRegistry, contract_hash: str) -> bool:
    return any(info.contract_hash == contract_hash for info in registry.list_contracts())


@contract_app.command("verify")
def verify(
    contract: ContractOption = None,
    contract_hash: HashOption = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Check every stored signature and revocation; exit non-zero unless in force.

    Exit 41 when a party has not signed or has revoked, 40 when expired.

    Example: cleanroom contract verify --hash 3f0c...e1
    """
    with open_workdir_store(workdir, store) as opened:
        registry = ContractRegistry(opened)
        h = _load_file(workdir, contract).hash if contract_hash is None else contract_hash
        status = registry.status(h)
    _echo_status(status)
    if not status.in_force:
        if status.missing or status.revoked_by or status.invalid:
            raise ConsentMissing(status.explain())
        raise ContractError(status.explain())


@contract_app.command("revoke")
def revoke(
    party: PartyOption,
    key: KeyOption = None,
    contract: ContractOption = None,
    contract_hash: HashOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    store: StoreOption = None,
) -> None:
    """Revoke PARTY's consent: permanent; brokers release no more keys under this hash.

    Example: cleanroom contract revoke --party hospital_b --yes
    """
    with open_workdir_store(workdir, store) as opened:
        registry = ContractRegistry(opened)
        h = _resolve(registry, workdir, contract, contract_hash)
        signing_key = _key(workdir, party, key)
        if not yes:
            typer.confirm(f"Revoke contract {h} for party {party}? This is permanent", abort=True)
        revocation = sign_revocation(registry.contract(h), party, signing_key)
        registry.revoke(h, party, revocation)
    typer.echo(f"party {party} revoked {h} at {revocation.time}")


__all__ = ["contract_app"]
