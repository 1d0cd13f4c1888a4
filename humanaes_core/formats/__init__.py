"""File formats HumanAes reads and writes: camera RAW and HEIC decoding, XMP sidecars, photo discovery,
card tables (CSV / JSON lines / JSON).

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "CHECK_COLUMNS",
    "CSV_COLUMNS",
    "CSV_NAMES",
    "LABELS",
    "NAMESPACE",
    "PHOTO_SUFFIXES",
    "Rating",
    "Skipped",
    "XmpError",
    "card_row",
    "collect_photos",
    "csv_text",
    "existing_sidecars",
    "is_raw",
    "json_line",
    "os_reason",
    "read_exif",
    "read_rating",
    "table_format",
    "write_csv",
    "write_decision",
    "write_json",
    "write_json_lines",
    "write_rows",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CHECK_COLUMNS": "cards",
        "CSV_COLUMNS": "cards",
        "CSV_NAMES": "cards",
        "LABELS": "xmp",
        "NAMESPACE": "xmp",
        "PHOTO_SUFFIXES": "photos",
        "Rating": "xmp",
        "Skipped": "photos",
        "XmpError": "xmp",
        "card_row": "cards",
        "collect_photos": "photos",
        "csv_text": "cards",
        "existing_sidecars": "xmp",
        "is_raw": "decoders",
        "json_line": "cards",
        "os_reason": "photos",
        "read_exif": "xmp",
        "read_rating": "xmp",
        "table_format": "cards",
        "write_csv": "cards",
        "write_decision": "xmp",
        "write_json": "cards",
        "write_json_lines": "cards",
        "write_rows": "cards",
    },
)
