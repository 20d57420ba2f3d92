"""Shared by the benchmarks: rewrite one ``## Section`` of docs/BENCHMARKS.md in place."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).parents[1] / "docs" / "BENCHMARKS.md"
_HEADER = """# Benchmarks

Measured, not asserted: every figure below was written by the script named in its section,
on the machine described there. Tests never assert times. Re-run all with `make bench`.
"""


def machine() -> str:
    """One line that says where the figures come from."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} cores, {platform.machine()}"


def write_section(title: str, body: str, *, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the ``## {title}`` section of BENCHMARKS.md with ``body``."""
    text = path.read_text() if path.exists() else _HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
