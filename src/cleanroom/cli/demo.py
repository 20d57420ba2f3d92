"""``cleanroom demo`` — the whole multi-party clean room on one machine."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cleanroom.cli import app


class RichProgress:
    """Shows the demo's steps, progress bars and proofs on a Rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def step(self, number: int, title: str) -> None:
        self.console.rule(f"[bold]{number}. {title}", align="left")

    def task(self, description: str, total: int) -> Callable[[int], None]:
        bar = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        task = bar.add_task(description, total=total)
        bar.start()

        def advance(done: int) -> None:
            bar.update(task, completed=done)
            if done >= total:
                bar.stop()

        return advance

    def proved(self, text: str) -> None:
        self.console.print(f"  [green]✔[/] {text}", highlight=False)

    def warn(self, text: str) -> None:
        self.console.print(f"  [bold yellow]⚠ {text}[/]", highlight=False)


def _summary(console: Console, result: dict[str, Any]) -> None:
    table = Table(
        title="Accuracy on held-out rows: each hospital's model alone vs the pooled model",
        caption="own: its own test rows; all: every hospital's test rows; gain in points",
    )
    table.add_column("hospital", no_wrap=True)
    for column in ("rows", "alone\nown", "alone\nall", "pooled\nown", "pooled\nall", "gain\nall"):
        table.add_column(column, justify="right", no_wrap=True)
    for party in result["parties"]:
        own, pooled = party["own_model"], party["pooled_model"]
        gain = pooled["all_test_accuracy"] - own["all_test_accuracy"]
        table.add_row(
            party["name"],
            f"{party['rows']:,}",
            f"{own['own_test_accuracy']:.1%}",
            f"{own['all_test_accuracy']:.1%}",
            f"{pooled['own_test_accuracy']:.1%}",
            f"{pooled['all_test_accuracy']:.1%}",
            f"{gain * 100:+.1f}",
        )
    console.print(table)
    pooled = result["pooled"]
    console.print(
        f"Pooled model: micro accuracy {pooled['micro_accuracy']:.1%}, macro accuracy "
        f"{pooled['macro_accuracy']:.1%}, log-loss {pooled['log_loss']:.3f}, log-loss reduction "
        f"{pooled['log_loss_reduction']:.3f}"
    )
    timings = Table(title="Time per phase (s)")
    timings.add_column("phase", no_wrap=True)
    timings.add_column("seconds", justify="right")
    for phase, seconds in result["timings_s"].items():
        timings.add_row(phase, f"{seconds:.1f}")
    console.print(timings)
    console.print(f"Work directory: {result['workdir']}  (report: {result['report']})")


class _Once(logging.Filter):
    """Pass each distinct warning once: the simulated TEE warns at every use, loudly."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _show_warnings_once(console: Console) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_Once())
    root = logging.getLogger("cleanroom")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    root.propagate = False


@app.command()
def demo(
    parties: Annotated[int, typer.Option(help="Synthetic hospitals (2-26).")] = 4,
    records: Annotated[int, typer.Option(help="Synthetic records per hospital.")] = 100_000,
    dataset: Annotated[
        str, typer.Option(help="'synthetic' or 'uci-heart' (the real four-site UCI data).")
    ] = "synthetic",
    algorithm: Annotated[
        str,
        typer.Option(help="multinomial_logistic_regression or gradient_boosted_trees."),
    ] = "multinomial_logistic_regression",
    store: Annotated[
        str | None, typer.Option(help="Store URL (default: SQLite in the work directory).")
    ] = None,
    workdir: Annotated[
        Path, typer.Option(help="Fresh work directory (a previous demo's is wiped).")
    ] = Path("cleanroom-demo"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")
    ] = False,
) -> None:
    """Run the whole multi-party clean room on this machine, on embedded defaults.

    Hospitals encrypt their records into the store, sign a contract, release their keys to
    an attested (SIMULATED) enclave, which trains the pooled model, seals it, signs a
    receipt and serves scores; the ledger is verified; report.html is written.

    Example: cleanroom demo --parties 4 --records 2000 --workdir /tmp/demo --json
    """
    from cleanroom.demo.flow import DemoOptions, run_demo
    from cleanroom.demo.report import write_report

    options = DemoOptions(
        parties=parties,
        records=records,
        dataset=dataset,  # type: ignore[arg-type]  # checked in DemoOptions
        algorithm=algorithm,
        store_url=store,
        workdir=workdir,
    )
    console = Console(stderr=as_json)
    _show_warnings_once(console)
    result = run_demo(options, RichProgress(console))
    report = write_report(result, Path(result["workdir"]) / "report.html")
    result["report"] = str(report)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _summary(console, result)
