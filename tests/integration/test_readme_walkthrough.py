"""The README's role-by-role walkthrough, run exactly as written (bash, real processes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cleanroom.demo.services import free_port

README = Path(__file__).parents[2] / "README.md"

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->", text, re.S
    )
    assert block is not None, "README.md lost its walkthrough block"
    return block.group(1)


def test_the_block_uses_every_role_command() -> None:
    script = walkthrough()
    for command in (
        "keys create",
        "data import",
        "contract init",
        "contract sign",
        "broker serve",
        "run ",
        "model open",
        "score ",
        "ledger verify",
    ):
        assert f"cleanroom {command}" in script, command


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "W": str(tmp_path / "walk"),
        "PA": str(free_port()),
        "PB": str(free_port()),
    }
    done = subprocess.run(
        ["bash", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "in force" in out
    assert '"score"' in out
    assert "entries verify" in out
    assert (tmp_path / "walk" / "model.onnx").stat().st_size > 1000
