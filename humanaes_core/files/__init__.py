"""Files HumanAes writes and reads: one atomic write for every file, one bounded read for metadata."""

from humanaes_core.files.atomic import NotRegularFileError, atomic_write
from humanaes_core.files.reading import (
    MAX_JSON_BYTES,
    FileTooLargeError,
    nonblocking_opener,
    parse_json,
    read_json_file,
    read_small_file,
)

__all__ = [
    "MAX_JSON_BYTES",
    "FileTooLargeError",
    "NotRegularFileError",
    "atomic_write",
    "nonblocking_opener",
    "parse_json",
    "read_json_file",
    "read_small_file",
]
