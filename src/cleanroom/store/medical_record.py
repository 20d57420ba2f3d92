"""The built-in dataset schema: the article's ``MedicalRecord``, every column encrypted.

Built from the column constants of :mod:`cleanroom.data.medical_record` (names, SQL
types, categories and plausibility ranges), so that the generators, the loaders and the
store agree on one definition.
"""

from __future__ import annotations

from functools import cache

from cleanroom.store.schema import ColumnSpec, DatasetSchema

#: The table name of the built-in schema (as in the article's ``dbo.MedicalRecords``).
MEDICAL_RECORD_TABLE = "MedicalRecords"


@cache
def medical_record_schema() -> DatasetSchema:
    """The MedicalRecord schema: ``risk`` is the label, all columns randomized-encrypted."""
    from cleanroom.data.medical_record import LABEL_COLUMN, MEDICAL_RECORD_COLUMNS

    columns = tuple(
        ColumnSpec(
            name=col.name,
            sql_type=col.sql_type,
            categories=col.codes or None,
            # A bit's categories already say everything its 0..1 range would.
            minimum=None if col.sql_type == "bit" else col.minimum,
            maximum=None if col.sql_type == "bit" else col.maximum,
            nullable=col.kind != "label",
        )
        for col in MEDICAL_RECORD_COLUMNS
    )
    return DatasetSchema(table=MEDICAL_RECORD_TABLE, columns=columns, label=LABEL_COLUMN)


__all__ = ["MEDICAL_RECORD_TABLE", "medical_record_schema"]
