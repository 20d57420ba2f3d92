"""Options and checks that several command groups share: one spelling, one wording.

Importing this module stays cheap (typer only): the store and ``cryptography`` are
imported by the helpers that need them, so ``cleanroom --help`` does not pay for them.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleanroom.errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography import x509

    from cleanroom.store import Store

#: The work directory every command uses when none is given.
DEFAULT_WORKDIR = Path("cleanroom-work")

_STORE_HELP = "Store URL instead of the SQLite file in the work directory"


def workdir_option(help: str) -> Any:
    """``--workdir``, with ``help`` saying what the command keeps there."""
    return typer.Option("--workdir", help=help)


def store_option(*, example: bool = True) -> Any:
    """``--store``: a store URL instead of the work directory's SQLite file."""
    if example:
        return typer.Option(
            "--store", help=f"{_STORE_HELP}, e.g. postgresql+psycopg://user@host:5432/db"
        )
    return typer.Option("--store", help=f"{_STORE_HELP}.")


#: ``--store URL`` (the help shows a PostgreSQL example).
StoreOption = Annotated[str | None, store_option()]


def open_workdir_store(workdir: Path, url: str | None) -> Store:
    """The store at ``url``, or the SQLite file of an existing ``workdir``."""
    from cleanroom.store import default_url, open_store

    if url is None:
        if not workdir.is_dir():
            raise ConfigurationError(f"the work directory {str(workdir)!r} does not exist")
        url = default_url(workdir)
    return open_store(url)


# -- services (broker, verifier) ----------------------------------------------------------

HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
TlsCertOption = Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM).")]
TlsKeyOption = Annotated[Path | None, typer.Option(help="TLS private key (PEM).")]
SimulationRootOption = Annotated[
    Path | None,
    typer.Option(help="PEM of the simulation root CA (needs --insecure-simulation)."),
]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (where plain http is allowed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listener(service: str, host: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Refuse half a TLS configuration, and plain http anywhere but loopback."""
    if (tls_cert is None) != (tls_key is None):
        raise ConfigurationError("--tls-cert and --tls-key go together")
    if tls_cert is None and not is_loopback(host):
        raise ConfigurationError(f"without TLS the {service} listens on loopback only")


def check_simulation_root(simulation_root: Path | None, insecure_simulation: bool) -> None:
    """``--simulation-root`` only with ``--insecure-simulation`` (danger is explicit)."""
    if simulation_root is not None and not insecure_simulation:
        raise ConfigurationError("--simulation-root needs --insecure-simulation")


def load_simulation_roots(simulation_root: Path | None) -> list[x509.Certificate]:
    """The certificates in ``--simulation-root`` (none without it)."""
    if simulation_root is None:
        return []
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(simulation_root.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read {simulation_root}: {error}") from error
