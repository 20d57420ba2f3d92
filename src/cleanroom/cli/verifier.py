"""``cleanroom verifier`` — run the attestation verifier service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cleanroom.cli import app
from cleanroom.cli._options import (
    HostOption,
    SimulationRootOption,
    TlsCertOption,
    TlsKeyOption,
    check_listener,
    check_simulation_root,
    load_simulation_roots,
)
from cleanroom.errors import ConfigurationError

verifier = typer.Typer(
    help="The attestation verifier: appraises evidence and issues EAR tokens.",
    no_args_is_help=True,
)
app.add_typer(verifier, name="verifier")


@verifier.command("serve")
def serve(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8600,
    issuer: Annotated[str, typer.Option(help="'iss' of the EAR tokens.")] = "cleanroom-verifier",
    tee: Annotated[
        list[str] | None, typer.Option(help="Allowed TEE type (repeat): sev-snp, tdx, sgx.")
    ] = None,
    measurement: Annotated[
        list[str] | None, typer.Option(help="Allowed measurement, hex (repeat).")
    ] = None,
    config_id: Annotated[str | None, typer.Option(help="Required config id, hex.")] = None,
    min_svn: Annotated[int, typer.Option(help="Minimum security version.")] = 0,
    insecure_simulation: Annotated[
        bool,
        typer.Option(
            "--insecure-simulation",
            help="INSECURE: accept simulated-TEE evidence (development only).",
        ),
    ] = False,
    allow_debug: Annotated[
        bool, typer.Option("--allow-debug", help="INSECURE: accept debug enclaves.")
    ] = False,
    allow_unknown_tcb: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-tcb",
            help="Accept SGX/TDX evidence verified without DCAP collateral (no TCB status).",
        ),
    ] = False,
    simulation_root: SimulationRootOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve /challenge, /attest and /.well-known/jwks.json until interrupted.

    Without --tls-cert/--tls-key it listens on loopback only.

    Example: cleanroom verifier serve --port 8600 --insecure-simulation
    --simulation-root sim/simulation-root.pem --measurement 5e0c...
    """
    import uvicorn

    from cleanroom.attestation import AttestationPolicy, VerifierSettings, create_app

    check_simulation_root(simulation_root, insecure_simulation)
    if insecure_simulation and simulation_root is None:
        raise ConfigurationError("--insecure-simulation needs --simulation-root")
    check_listener("verifier", host, tls_cert, tls_key)
    policy = AttestationPolicy(
        allowed_tees=frozenset(tee or ()),
        allowed_measurements=frozenset(measurement or ()),
        required_config_id=config_id,
        min_svn=min_svn,
        allow_simulation=insecure_simulation,
        allow_debug=allow_debug,
        allow_unknown_tcb=allow_unknown_tcb,
    )
    roots = load_simulation_roots(simulation_root)
    settings = VerifierSettings(issuer=issuer, policy=policy, trusted_roots=roots)
    if insecure_simulation:
        typer.secho(
            "WARNING: --insecure-simulation: simulated TEE evidence will be accepted",
            fg=typer.colors.RED,
            err=True,
        )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
    )


@verifier.command("measure")
def measure(
    package_dir: Annotated[
        Path | None, typer.Option(help="Package directory (default: the installed cleanroom).")
    ] = None,
    lock_file: Annotated[
        Path | None, typer.Option(help="Dependency lock (default: the project's, if any).")
    ] = None,
) -> None:
    """Print the simulated-TEE measurement of the enclave bundle (a reference value).

    Example: cleanroom verifier measure
    """
    import shutil
    import tempfile

    from cleanroom.tee.bundle import build_bundle, default_lock_file, default_package_dir

    package = package_dir or default_package_dir()
    lock = lock_file if lock_file is not None else default_lock_file(package)
    scratch = Path(tempfile.mkdtemp(prefix="cleanroom-measure-"))
    try:
        typer.echo(build_bundle(scratch, package_dir=package, lock_file=lock).measurement)
    finally:
        shutil.rmtree(scratch)
