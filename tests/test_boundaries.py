"""Architecture rules that keep the dangerous parts in one place (STYLE.md habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "cleanroom"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_crypto_package_imports_raw_primitives() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "crypto" not in path.relative_to(SRC).parts[:1]
        and any(name.startswith("cleanroom.crypto._hazmat") for name in _imports(path))
    ]
    assert offenders == []


def test_no_tls_verification_is_ever_switched_off() -> None:
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "verify=False" not in text, path
