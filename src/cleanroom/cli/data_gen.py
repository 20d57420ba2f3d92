"""``cleanroom synth`` — MedicalRecord CSV files for N synthetic hospitals (or the UCI sites)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cleanroom.cli import app
from cleanroom.errors import ConfigurationError

_out = Console()


@app.command("synth")
def synth(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the <hospital>.csv files (created).")
    ],
    parties: Annotated[int, typer.Option("--parties", help="Number of hospitals.")] = 4,
    records: Annotated[int, typer.Option("--records", help="Records per hospital.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    uci: Annotated[
        bool,
        typer.Option(
            "--uci",
            help="Write the real UCI Heart Disease sites (cleveland, hungarian, switzerland, "
            "va) instead of synthetic ones; not combinable with --parties/--records/--seed.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write one MedicalRecord CSV file per hospital: header risk,age,sex,smoker,chestPain,
    bloodPressure,serumCholestoral,fastingBloodSugar,maxHeartRate; a missing value is an
    empty field. The data is deterministic in --parties/--records/--seed; hospitals are
    named hospital-a, hospital-b, ... and differ in population, referral pattern and
    measurement habits (see docs/data.md).

    Example: cleanroom synth --parties 4 --records 100000 --seed 0 --out sites/
    """
    from cleanroom.data.files import write_sites_csv
    from cleanroom.data.synthetic import generate_sites
    from cleanroom.data.uci import load_uci_sites

    sites: dict[str, pd.DataFrame] | None = None
    if uci:
        given = [
            f"--{name}"
            for name in ("parties", "records", "seed")
            # Compared by name: typer may carry its own copy of click's enum.
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
        ]
        if given:
            raise ConfigurationError(f"--uci writes the fixed UCI sites: drop {', '.join(given)}")
        sites = load_uci_sites()
        source = "UCI Heart Disease, CC BY 4.0"
    else:
        source = f"synthetic, seed {seed}"

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_out,
        transient=True,
    ) as progress:
        if sites is None:
            # Generating takes a fraction of the time writing does: one step is enough.
            task = progress.add_task(f"generating {parties} hospital(s)", total=1)
            sites = generate_sites(parties, records, seed)
            progress.remove_task(task)
        tasks = {
            name: progress.add_task(f"writing {name}.csv", total=len(frame))
            for name, frame in sites.items()
        }

        def on_rows(name: str, done: int) -> None:
            progress.update(tasks[name], completed=done)

        paths = write_sites_csv(sites, out, overwrite=force, on_rows=on_rows)

    for name, path in paths.items():
        frame = sites[name]
        any_disease = float((frame["risk"] > 0).mean())
        missing = float(frame.drop(columns="risk").isna().to_numpy().mean())
        _out.print(
            f"{path}: {len(frame)} records, any disease {any_disease:.1%}, "
            f"missing cells {missing:.1%}",
            highlight=False,
            soft_wrap=True,
        )
    _out.print(f"{len(paths)} file(s) written ({source})", highlight=False, soft_wrap=True)
