"""MedicalRecord CSV files: one file per site, the column names as the header.

The format: UTF-8, comma separated, ``\\n`` line ends, a header line with the
MedicalRecord column names in :data:`~cleanroom.data.medical_record.MEDICAL_RECORD_COLUMN_NAMES`
order (``risk`` first), whole numbers only, a missing value as an empty field.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from cleanroom.data.medical_record import (
    MEDICAL_RECORD_COLUMN_NAMES,
    as_medical_records,
    check_medical_records,
)
from cleanroom.errors import ConfigurationError, SchemaError

_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

#: Called after each chunk with the site name and the number of rows written so far.
ProgressCallback = Callable[[str, int], None]


def check_site_name(name: str) -> str:
    """Return ``name`` if it is a usable site (and file) name, else raise.

    A site name is 1–63 characters of lower-case letters, digits and ``-``, starting
    with a letter or digit, so it is always a safe file name.

    Raises:
        ConfigurationError: the name is not of that form.
    """
    if not _SITE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"site name {name!r} must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'"
        )
    return name


def write_sites_csv(
    sites: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    chunk_rows: int = 25_000,
    on_rows: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Write each site's MedicalRecords to ``out_dir/<site>.csv``; return the paths by site.

    ``out_dir`` is created if needed. Each file is written to a temporary name and
    renamed into place, so a reader never sees half a file.

    Raises:
        ConfigurationError: a site name is unusable, ``chunk_rows`` is not positive, or a
            file exists and ``overwrite`` is false (checked before anything is written).
        SchemaError: a frame is not a valid MedicalRecord frame.
    """
    if chunk_rows <= 0:
        raise ConfigurationError("chunk_rows must be positive")
    directory = Path(out_dir)
    targets = {check_site_name(name): directory / f"{name}.csv" for name in sites}
    for frame in sites.values():
        check_medical_records(frame)
    if not overwrite:
        existing = [str(path) for path in targets.values() if path.exists()]
        if existing:
            raise ConfigurationError(
                f"refusing to overwrite {', '.join(existing)} (pass overwrite=True / --force)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in sites.items():
        _write_one(frame, targets[name], name, chunk_rows, on_rows)
    return targets


def _write_one(
    frame: pd.DataFrame,
    path: Path,
    name: str,
    chunk_rows: int,
    on_rows: ProgressCallback | None,
) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(MEDICAL_RECORD_COLUMN_NAMES) + "\n")
            for start in range(0, len(frame), chunk_rows):
                chunk = frame.iloc[start : start + chunk_rows]
                chunk.to_csv(handle, header=False, index=False, na_rep="", lineterminator="\n")
                if on_rows is not None:
                    on_rows(name, start + len(chunk))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_medical_records_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one MedicalRecord CSV file written by :func:`write_sites_csv` (or by hand).

    Only an empty field means missing; ``?``, ``NA`` or text is an error.

    Raises:
        SchemaError: the header is not the MedicalRecord header, or a value is not a
            whole number in its column's range.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if tuple(frame.columns) != MEDICAL_RECORD_COLUMN_NAMES:
        raise SchemaError(
            f"{os.fspath(path)}: header must be " + ",".join(MEDICAL_RECORD_COLUMN_NAMES)
        )
    return as_medical_records(frame)


__all__ = ["ProgressCallback", "check_site_name", "read_medical_records_csv", "write_sites_csv"]
