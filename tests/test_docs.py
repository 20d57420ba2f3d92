"""The overview docs stay true: links resolve, docs/cli.md matches the CLI and EXIT_CODES.

Each check is a small function run on the real files and, to show it can fail, on a copy
with one thing broken.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from cleanroom.cli import _register, app
from cleanroom.errors import EXIT_CODES

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


# -- links -------------------------------------------------------------------------------------


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def relative_links(text: str) -> list[str]:
    """Every link target in Markdown ``text`` that is not a URL with a scheme."""
    prose = _prose(text)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE.findall(prose)
    return [t for t in targets if t and not _SCHEME.match(t)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for the headings of ``text`` (duplicates get -1, -2, …)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(source: Path, text: str) -> list[str]:
    """The relative links of ``text`` (a file at ``source``) to a missing file or anchor."""
    broken: list[str] = []
    for target in relative_links(text):
        path_part, _, anchor = target.partition("#")
        path = (source.parent / path_part).resolve() if path_part else source
        if not path.exists():
            broken.append(target)
            continue
        if anchor and path.suffix == ".md":
            body = text if path == source else path.read_text(encoding="utf-8")
            if anchor not in anchors(body):
                broken.append(target)
    return broken


@pytest.mark.parametrize("doc", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_relative_links_resolve(doc: Path) -> None:
    assert broken_links(doc, doc.read_text(encoding="utf-8")) == []


def test_the_overview_docs_exist_and_link_somewhere() -> None:
    for name in ("architecture.md", "security.md", "formats.md", "cli.md"):
        assert relative_links((DOCS / name).read_text(encoding="utf-8")), name


def test_link_check_can_fail() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    assert broken_links(CLI_DOC, text) == []
    assert broken_links(CLI_DOC, text + "\nSee [x](nowhere.md).\n") == ["nowhere.md"]
    assert broken_links(CLI_DOC, text + "\nSee [x](ledger.md#no-such-heading).\n") == [
        "ledger.md#no-such-heading"
    ]
    assert broken_links(CLI_DOC, text + "\n`[not a link](nowhere.md)`\n") == []
    assert slug("The wrapped-CEK blob (`ENCRYPTED_VALUE`, algorithm `RSA_OAEP`)") == (
        "the-wrapped-cek-blob-encrypted_value-algorithm-rsa_oaep"
    )


# -- commands ----------------------------------------------------------------------------------


def registered_commands() -> set[str]:
    """Every leaf command of the ``cleanroom`` Typer app, as ``"group command"``."""
    _register()
    found: set[str] = set()

    def walk(prefix: str, command: Any) -> None:
        # typer vendors its own click: duck-type groups instead of isinstance(click.Group).
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.add(prefix)

    walk("", typer.main.get_command(app))
    return found


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/cli.md has no '## {title}' section"
    return match.group(1)


def _first_cells(section: str) -> list[str]:
    cells = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|?$", line):
            cells.append(line.split("|")[1].strip())
    return cells[1:]  # the header row


def documented_commands(text: str) -> set[str]:
    """The commands in the first column of the table under ``## Commands``."""
    commands = set()
    for cell in _first_cells(_section(text, "Commands")):
        match = re.fullmatch(r"`cleanroom ([a-z0-9 -]+)`", cell)
        assert match is not None, f"not a command cell: {cell!r}"
        commands.add(match.group(1))
    return commands


def test_cli_doc_lists_every_command_and_no_other() -> None:
    documented = documented_commands(CLI_DOC.read_text(encoding="utf-8"))
    registered = registered_commands()
    assert sorted(registered - documented) == [], "registered but not in docs/cli.md"
    assert sorted(documented - registered) == [], "in docs/cli.md but not registered"


def test_command_check_can_fail() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    documented = documented_commands(text)
    assert {"version", "contract sign", "ledger verify"} <= documented
    row = "`cleanroom ledger verify`"
    without = "\n".join(line for line in text.splitlines() if row not in line)
    assert "ledger verify" in registered_commands()
    assert documented - documented_commands(without) == {"ledger verify"}


# -- exit codes --------------------------------------------------------------------------------


def documented_exit_codes(text: str) -> list[tuple[str, int]]:
    """``(class name, code)`` rows of the table under ``## Exit codes``, in order."""
    rows = []
    for line in _section(text, "Exit codes").splitlines():
        match = re.match(r"^\|\s*`(\w+)`\s*\|\s*(\d+)\s*\|", line)
        if match:
            rows.append((match.group(1), int(match.group(2))))
    return rows


def test_exit_code_table_matches_exit_codes() -> None:
    expected = [(cls.__name__, code) for cls, code in EXIT_CODES]
    assert documented_exit_codes(CLI_DOC.read_text(encoding="utf-8")) == expected


def test_exit_code_check_can_fail() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    changed = text.replace("| `LedgerError` | 80 |", "| `LedgerError` | 81 |")
    assert changed != text
    assert ("LedgerError", 81) in documented_exit_codes(changed)
    assert documented_exit_codes(changed) != [(c.__name__, n) for c, n in EXIT_CODES]
