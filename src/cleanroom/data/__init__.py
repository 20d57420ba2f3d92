"""Data to work with: the MedicalRecord columns, synthetic hospitals, the real UCI sites.

- :mod:`~cleanroom.data.medical_record` — the article's MedicalRecord: names, meanings,
  ranges and SQL types as constants, and a frame check.
- :mod:`~cleanroom.data.synthetic` — realistic MedicalRecords for N hospitals that differ
  the way real sites do (``cleanroom synth``).
- :mod:`~cleanroom.data.uci` — the UCI Heart Disease data of four institutions, shipped in
  the package (CC BY 4.0; creators credited in ``uci_heart_disease/PROVENANCE.md``).
- :mod:`~cleanroom.data.files` — one CSV file per site.

See ``docs/data.md``.
"""

from cleanroom.data.files import check_site_name, read_medical_records_csv, write_sites_csv
from cleanroom.data.medical_record import (
    FEATURE_COLUMN_NAMES,
    LABEL_COLUMN,
    MEDICAL_RECORD_COLUMN_NAMES,
    MEDICAL_RECORD_COLUMNS,
    Column,
    as_medical_records,
    check_medical_records,
)
from cleanroom.data.synthetic import (
    ARCHETYPES,
    LABEL_MODEL,
    LabelModel,
    SiteProfile,
    generate_from_profiles,
    generate_site,
    generate_sites,
    site_profiles,
)
from cleanroom.data.uci import (
    UCI_SITES,
    load_uci_site,
    load_uci_sites,
    uci_provenance,
    write_uci_csv,
)

__all__ = [
    "ARCHETYPES",
    "FEATURE_COLUMN_NAMES",
    "LABEL_COLUMN",
    "LABEL_MODEL",
    "MEDICAL_RECORD_COLUMNS",
    "MEDICAL_RECORD_COLUMN_NAMES",
    "UCI_SITES",
    "Column",
    "LabelModel",
    "SiteProfile",
    "as_medical_records",
    "check_medical_records",
    "check_site_name",
    "generate_from_profiles",
    "generate_site",
    "generate_sites",
    "load_uci_site",
    "load_uci_sites",
    "read_medical_records_csv",
    "site_profiles",
    "uci_provenance",
    "write_sites_csv",
    "write_uci_csv",
]
