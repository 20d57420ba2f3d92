"""Every ``cleanroom`` command has help text with an example (STYLE.md, sqlite-utils habit)."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from cleanroom.cli import _register, app, main


def _commands() -> list[tuple[str, Any]]:
    _register()
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        # typer ships its own click: duck-type groups instead of isinstance(click.Group).
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", root)
    return found


COMMANDS = _commands()


def test_there_are_commands() -> None:
    assert len(COMMANDS) >= 2


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str, command: Any) -> None:
    assert command.help, f"cleanroom {name} has no help"
    assert "example" in command.help.lower(), f"cleanroom {name} help has no example"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_runs(name: str, command: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*name.split(), "--help"]) == 0
    assert "Usage" in capsys.readouterr().out
