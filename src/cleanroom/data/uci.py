"""The UCI Heart Disease data of four institutions, mapped onto the MedicalRecord.

The files ship inside the package (``cleanroom/data/uci_heart_disease/``) and are read
with :mod:`importlib.resources`, so the loader works from an installed wheel.

Source: UCI Machine Learning Repository, Heart Disease (doi:10.24432/C52P4X), CC BY 4.0.
Creators: Andras Janosi, M.D. (Hungarian Institute of Cardiology, Budapest); William
Steinbrunn, M.D. (University Hospital, Zurich); Matthias Pfisterer, M.D. (University
Hospital, Basel); Robert Detrano, M.D., Ph.D. (V.A. Medical Center, Long Beach, and
Cleveland Clinic Foundation). Donor: David W. Aha. See ``PROVENANCE.md`` and
``heart-disease.names`` beside the files.

Mapping (UCI attribute → MedicalRecord column): ``age`` → ``age``, ``sex`` → ``sex``
(1 male), ``cp`` → ``chestPain``, ``trestbps`` → ``bloodPressure``, ``chol`` →
``serumCholestoral``, ``fbs`` → ``fastingBloodSugar``, ``thalach`` → ``maxHeartRate``,
``num`` → ``risk``. ``?`` (and ``-9`` in the reprocessed Hungarian file) is missing. A
cholesterol or blood pressure of 0 is missing too: Switzerland records cholesterol as 0
for every patient and VA Long Beach for 49, and one VA blood pressure is 0 — none of
these is a measurement. ``smoker`` is not among the 14 processed attributes, so it is
missing for every record: never invented. Hungarian ``risk`` comes from
``reprocessed.hungarian.data`` (the same 294 patients with ``num`` 0–4), because
``processed.hungarian.data`` collapses ``num`` to 0/1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import pandas as pd

from cleanroom.data.files import ProgressCallback, write_sites_csv
from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMN_NAMES, as_medical_records
from cleanroom.errors import ConfigurationError

#: The 14 attributes of the processed files, in file order.
UCI_ATTRIBUTES: Final[tuple[str, ...]] = (
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
)

#: UCI attribute → MedicalRecord column (``smoker`` has no source).
UCI_TO_MEDICAL_RECORD: Final[Mapping[str, str]] = MappingProxyType(
    {
        "num": "risk",
        "age": "age",
        "sex": "sex",
        "cp": "chestPain",
        "trestbps": "bloodPressure",
        "chol": "serumCholestoral",
        "fbs": "fastingBloodSugar",
        "thalach": "maxHeartRate",
    }
)

#: Site name → institution.
UCI_SITES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "cleveland": "Cleveland Clinic Foundation",
        "hungarian": "Hungarian Institute of Cardiology, Budapest",
        "switzerland": "University Hospitals Zurich and Basel",
        "va": "V.A. Medical Center, Long Beach",
    }
)

#: Records per site, as in the files.
UCI_RECORD_COUNTS: Final[Mapping[str, int]] = MappingProxyType(
    {"cleveland": 303, "hungarian": 294, "switzerland": 123, "va": 200}
)

_PACKAGE_DIR = "uci_heart_disease"
_ZERO_IS_MISSING = ("trestbps", "chol")


def _resource(name: str) -> resources.abc.Traversable:
    return resources.files("cleanroom.data").joinpath(_PACKAGE_DIR, name)


def read_uci_file(name: str) -> pd.DataFrame:
    """One packaged UCI file as float columns named by :data:`UCI_ATTRIBUTES`, unmapped.

    ``name`` is ``processed.<site>.data`` (comma separated, ``?`` missing) or
    ``reprocessed.hungarian.data`` (space separated, ``-9`` missing).

    Raises:
        ConfigurationError: no such packaged file.
    """
    resource = _resource(name)
    if not (name.endswith(".data") and resource.is_file()):
        raise ConfigurationError(f"no packaged UCI file {name!r}")
    with resource.open("r", encoding="ascii") as handle:
        if name.startswith("reprocessed."):
            frame = pd.read_csv(
                handle, header=None, names=list(UCI_ATTRIBUTES), sep=r"\s+", dtype=np.float64
            )
            return frame.mask(frame == -9.0)
        return pd.read_csv(
            handle,
            header=None,
            names=list(UCI_ATTRIBUTES),
            na_values=["?"],
            keep_default_na=False,
            dtype=np.float64,
        )


def _to_medical_records(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.copy()
    for attribute in _ZERO_IS_MISSING:
        frame[attribute] = frame[attribute].mask(frame[attribute] == 0.0)
    mapped = frame[list(UCI_TO_MEDICAL_RECORD)].rename(columns=dict(UCI_TO_MEDICAL_RECORD))
    mapped["smoker"] = np.nan
    return as_medical_records(mapped[list(MEDICAL_RECORD_COLUMN_NAMES)])


def load_uci_site(site: str) -> pd.DataFrame:
    """One UCI institution's records as a MedicalRecord frame (see the module docstring).

    Raises:
        ConfigurationError: ``site`` is not one of :data:`UCI_SITES`.
    """
    if site not in UCI_SITES:
        raise ConfigurationError(f"unknown UCI site {site!r}; choose from {', '.join(UCI_SITES)}")
    name = "reprocessed.hungarian.data" if site == "hungarian" else f"processed.{site}.data"
    return _to_medical_records(read_uci_file(name))


def load_uci_sites() -> dict[str, pd.DataFrame]:
    """The four UCI institutions as MedicalRecord frames, by site name (920 records in all).

    Example::

        sites = load_uci_sites()
        sites["cleveland"]["risk"].gt(0).mean()   # 0.46
    """
    return {site: load_uci_site(site) for site in UCI_SITES}


def uci_provenance() -> str:
    """The packaged ``PROVENANCE.md``: creators, licence, files and checksums."""
    return _resource("PROVENANCE.md").read_text(encoding="utf-8")


def write_uci_csv(
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    on_rows: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Write the four UCI sites to ``out_dir/<site>.csv`` (MedicalRecord CSV format).

    Raises:
        ConfigurationError: a file exists and ``overwrite`` is false.
    """
    return write_sites_csv(load_uci_sites(), out_dir, overwrite=overwrite, on_rows=on_rows)


__all__ = [
    "UCI_ATTRIBUTES",
    "UCI_RECORD_COUNTS",
    "UCI_SITES",
    "UCI_TO_MEDICAL_RECORD",
    "load_uci_site",
    "load_uci_sites",
    "read_uci_file",
    "uci_provenance",
    "write_uci_csv",
]
