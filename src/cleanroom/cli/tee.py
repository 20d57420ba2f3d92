"""``cleanroom tee`` — the operator's platform: set up the simulated TEE before anyone trusts it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cleanroom.cli import app

tee_app = typer.Typer(
    name="tee",
    help="The TEE platform the enclave runs on (the simulated one on development machines).",
    no_args_is_help=True,
)
app.add_typer(tee_app)


@tee_app.command("init-simulation")
def init_simulation(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Work directory (the root goes to <workdir>/sim).")
    ] = Path("cleanroom-work"),
) -> None:
    """INSECURE: create (or reuse) the simulated TEE's root CA and print what to trust.

    Brokers and verifiers that accept the simulation are given the root's path
    (--simulation-root); contracts name the measurement. A real TEE needs none of this.

    Example: cleanroom tee init-simulation --workdir cleanroom-work
    """
    from cleanroom.tee.simulated import SimulatedLauncher

    typer.secho(
        "WARNING: the simulated TEE protects nothing from this machine's operator "
        "(development only)",
        fg=typer.colors.RED,
        err=True,
    )
    import shutil
    import tempfile

    launcher = SimulatedLauncher(allow_simulation=True, workdir=workdir / "sim")
    scratch = Path(tempfile.mkdtemp(prefix="cleanroom-measure-"))
    try:
        measurement = launcher.prepare_bundle(scratch / "bundle").measurement
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    typer.echo(f"simulation root  {workdir / 'sim' / 'simulation-root.pem'}")
    typer.echo(f"measurement      {measurement}")


__all__ = ["init_simulation"]
