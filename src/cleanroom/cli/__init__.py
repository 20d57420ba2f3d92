"""The ``cleanroom`` command: a thin layer over the library, one call per command.

Errors print one line on stderr (never a traceback) and exit with the status that
:data:`cleanroom.errors.EXIT_CODES` gives their class.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from cleanroom import __version__
from cleanroom.errors import CleanroomError, exit_code_for

app = typer.Typer(
    name="cleanroom",
    help="A confidential clean room for multi-party machine learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_err = Console(stderr=True)


@app.command()
def version() -> None:
    """Print the cleanroom version.

    Example: cleanroom version
    """
    typer.echo(__version__)


#: Modules that register sub-commands on ``app`` when imported (add yours here).
COMMAND_MODULES: tuple[str, ...] = (
    "broker",
    "contract",
    "data",
    "data_gen",
    "demo",
    "keys",
    "ledger",
    "model",
    "run",
    "score",
    "sql",
    "tee",
    "verifier",
)


def _register() -> None:
    # Each command group lives in its own small module; importing it registers it.
    for name in COMMAND_MODULES:
        importlib.import_module(f"cleanroom.cli.{name}")


# typer vendors its own click; reach its exception base through a public typer name.
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cleanroom`` console script: returns the exit status."""
    _register()
    try:
        result = app(args=argv, standalone_mode=False)
    except CleanroomError as error:
        _err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        return exit_code_for(error)
    except _ClickException as error:  # usage errors: bad option, missing argument
        error.show()  # type: ignore[attr-defined]
        return int(error.exit_code)  # type: ignore[attr-defined]
    except (typer.Abort, KeyboardInterrupt):
        _err.print("aborted")
        return 130
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
