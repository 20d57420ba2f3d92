"""``cleanroom broker`` — run one party's key broker (KBS protocol)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from cleanroom.cli import app
from cleanroom.cli._options import (
    DEFAULT_WORKDIR,
    HostOption,
    SimulationRootOption,
    TlsCertOption,
    TlsKeyOption,
    check_listener,
    check_simulation_root,
    is_loopback,
    load_simulation_roots,
)
from cleanroom.errors import ConfigurationError

broker = typer.Typer(
    help="The party's key broker: releases its column keys to attested enclaves.",
    no_args_is_help=True,
)
app.add_typer(broker, name="broker")


def _load_jwks(source: str) -> dict[str, Any]:
    """A JWK set from a file, or fetched once from an https (or loopback http) URL."""
    if source.startswith(("https://", "http://")):
        import httpx

        host = httpx.URL(source).host
        if source.startswith("http://") and not is_loopback(host):
            raise ConfigurationError("--verifier-jwks over plain http only on loopback")
        try:
            reply = httpx.get(source, timeout=30.0)
            reply.raise_for_status()
            document = reply.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ConfigurationError(f"cannot fetch the verifier JWKS: {error}") from error
    else:
        try:
            document = json.loads(Path(source).read_text())
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"cannot read the verifier JWKS {source}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigurationError("the verifier JWKS is not a JWK set")
    return document


def _veto_file(workdir: Path, party: str) -> Path:
    from cleanroom.store import check_identifier

    return workdir / "broker" / check_identifier(party, "a party name") / "vetoes.txt"


@broker.command("veto")
def veto(
    party: Annotated[str, typer.Option(help="The party whose broker refuses the contract.")],
    contract: Annotated[str, typer.Option(help="The contract hash (64 hex digits).")],
    workdir: Annotated[Path, typer.Option(help="Work directory of the broker.")] = DEFAULT_WORKDIR,
) -> None:
    """Make this party's broker refuse every key release for a contract, from the next request.

    This is the party's own list, kept next to its broker: it holds even if the operator
    deletes a revocation from the shared store. Revoke in the registry as well
    (cleanroom contract revoke) so the other parties and the enclave see it.

    Example: cleanroom broker veto --party hospital_a --contract 3f2a...e9
    """
    from cleanroom.broker import add_veto

    path = _veto_file(workdir, party)
    add_veto(path, contract)
    typer.echo(f"{party}'s broker now refuses contract {contract[:16]}... ({path})")


@broker.command("serve")
def serve(
    party: Annotated[str, typer.Option(help="The party whose keys this broker releases.")],
    workdir: Annotated[
        Path, typer.Option(help="Work directory (store, key store, decision log).")
    ] = DEFAULT_WORKDIR,
    store: Annotated[
        str | None, typer.Option(help="Store URL (default: the SQLite file in --workdir).")
    ] = None,
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8700,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="INSECURE: release keys to simulated-TEE enclaves (development only).",
        ),
    ] = False,
    simulation_root: SimulationRootOption = None,
    verifier_jwks: Annotated[
        str | None,
        typer.Option(help="Accept EAR tokens signed by this verifier key set (URL or file)."),
    ] = None,
    verifier_issuer: Annotated[
        str, typer.Option(help="'iss' of the trusted verifier's EAR tokens.")
    ] = "cleanroom-verifier",
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve /kbs/v0/auth, /kbs/v0/attest and /kbs/v0/resource/<party>/cek/<name>.

    Decisions are appended to <workdir>/broker/<party>/decisions.jsonl; contracts listed
    in <workdir>/broker/<party>/vetoes.txt (see 'cleanroom broker veto') are refused.
    Without --tls-cert/--tls-key it listens on loopback only.

    Example: cleanroom broker serve --party hospital_a --port 8701 --insecure-simulation
    --simulation-root sim/simulation-root.pem
    """
    import uvicorn

    from cleanroom.broker import BrokerSettings, DecisionLog, create_app
    from cleanroom.client import Workspace
    from cleanroom.contract import ContractRegistry
    from cleanroom.contract.workdir import load_broker_key

    check_simulation_root(simulation_root, insecure_simulation)
    if insecure_simulation and simulation_root is None and verifier_jwks is None:
        raise ConfigurationError("--insecure-simulation needs --simulation-root or --verifier-jwks")
    check_listener("broker", host, tls_cert, tls_key)
    roots = load_simulation_roots(simulation_root)
    jwks = None if verifier_jwks is None else _load_jwks(verifier_jwks)
    settings = BrokerSettings(
        party=party,
        insecure_simulation=insecure_simulation,
        simulation_roots=roots,
        verifier_jwks=jwks,
        verifier_issuer=None if jwks is None else verifier_issuer,
        secure_cookie=tls_cert is not None,
        veto_file=_veto_file(workdir, party),
    )
    signing_key = load_broker_key(workdir, party)
    if signing_key is None:
        typer.secho(
            f"note: {party} has no broker key in {workdir}/parties/{party}; receipts are signed "
            "by a fresh key that no contract pins (create them with 'cleanroom contract keygen')",
            err=True,
        )
    workspace = Workspace(workdir=workdir, store_url=store)
    opened = workspace.open_store()
    service = create_app(
        settings,
        store=opened,
        contracts=ContractRegistry(opened),
        key_store=workspace.key_store(party),
        decision_log=DecisionLog(workdir / "broker" / party / "decisions.jsonl"),
        signing_key=signing_key,
    )
    if insecure_simulation:
        typer.secho(
            "WARNING: --insecure-simulation: keys may go to simulated (debug) enclaves",
            fg=typer.colors.RED,
            err=True,
        )
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    scheme = "http" if tls_cert is None else "https"
    typer.echo(f"broker for {party} listening on {scheme}://{host}:{sock.getsockname()[1]}")
    config = uvicorn.Config(
        service,
        log_level="warning",
        lifespan="off",
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        opened.close()
