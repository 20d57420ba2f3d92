"""What the operator's store holds: a scan for plaintext and keys, as the demo proves it.

Two checks, both from the operator's side (no key needed):

- **structure** — every value of every encrypted column is NULL or a well-formed Always
  Encrypted cell (version byte 0x01, 65 + 16·k bytes);
- **content** — the raw database bytes (the SQLite file and its WAL) contain none of the
  given needles: distinctive plaintext (e.g. whole CSV lines) and the plaintext CEKs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from cleanroom.store import Store


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan found. ``plaintext_found`` is the one bit the demo reports."""

    cells: int
    malformed_cells: int
    needles: int
    needles_found: int
    files_scanned: tuple[str, ...]

    @property
    def plaintext_found(self) -> bool:
        return self.malformed_cells > 0 or self.needles_found > 0


def count_cells(store: Store) -> tuple[int, int]:
    """(cells, malformed cells) over every encrypted column of every dataset in ``store``."""
    cells = malformed = 0
    for info in store.datasets():
        columns = [c.name for c in info.schema.columns if c.encrypted]
        if not columns:
            continue
        table = sa.Table(info.table_name, sa.MetaData(), autoload_with=store.engine)
        with store.engine.connect() as conn:
            for column in columns:
                col = table.c[column]
                length = sa.func.length(col)
                total = conn.execute(
                    sa.select(sa.func.count()).where(col.is_not(None))
                ).scalar_one()
                bad = conn.execute(
                    sa.select(sa.func.count()).where(
                        col.is_not(None),
                        sa.or_(length < 65, (length - 49) % 16 != 0),
                    )
                ).scalar_one()
                cells += int(total)
                malformed += int(bad)
    return cells, malformed


def database_files(url: str) -> list[Path]:
    """The files of a SQLite store (the database, its WAL and journal); [] for a server."""
    if not url.startswith("sqlite"):
        return []
    path = Path(sa.engine.make_url(url).database or "")
    candidates = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
    return [p for p in candidates if p.exists()]


def scan_store(store: Store, url: str, needles: Iterable[bytes]) -> ScanResult:
    """Check the store's structure and scan its raw files for ``needles``."""
    cells, malformed = count_cells(store)
    wanted = [n for n in needles if n]
    found = 0
    files = database_files(url)
    blobs = [f.read_bytes() for f in files]
    for needle in wanted:
        if any(needle in blob for blob in blobs):
            found += 1
    return ScanResult(cells, malformed, len(wanted), found, tuple(str(f) for f in files))
