"""The public surface of cleanroom.data is pinned (STYLE.md: a curated public surface)."""

from __future__ import annotations

import cleanroom.data


def test_public_names_are_pinned() -> None:
    assert set(cleanroom.data.__all__) == {
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
    }
    assert len(cleanroom.data.__all__) == len(set(cleanroom.data.__all__))
    for name in cleanroom.data.__all__:
        assert getattr(cleanroom.data, name) is not None
        obj = getattr(cleanroom.data, name)
        if callable(obj):
            assert obj.__doc__, name
