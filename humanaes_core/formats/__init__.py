"""File formats HumanAes reads and writes: camera RAW and HEIC decoding, XMP sidecars, photo discovery.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "LABELS",
    "PHOTO_SUFFIXES",
    "Rating",
    "Skipped",
    "XmpError",
    "collect_photos",
    "existing_sidecars",
    "is_raw",
    "os_reason",
    "read_exif",
    "read_rating",
    "write_decision",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LABELS": "xmp",
        "PHOTO_SUFFIXES": "photos",
        "Rating": "xmp",
        "Skipped": "photos",
        "XmpError": "xmp",
        "collect_photos": "photos",
        "existing_sidecars": "xmp",
        "is_raw": "decoders",
        "os_reason": "photos",
        "read_exif": "xmp",
        "read_rating": "xmp",
        "write_decision": "xmp",
    },
)
