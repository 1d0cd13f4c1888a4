"""Files HumanAes writes and reads: one atomic write for every file, one bounded read for metadata, one
time limit for decoding a photo."""

from humanaes_core.files.atomic import NotRegularFileError, atomic_write
from humanaes_core.files.reading import (
    MAX_JSON_BYTES,
    FileTooLargeError,
    nonblocking_opener,
    parse_json,
    read_json_file,
    read_small_file,
)
from humanaes_core.files.time_limit import (
    DECODE_TIMEOUT_ENV,
    DEFAULT_DECODE_TIMEOUT_S,
    TOO_SLOW,
    Deadline,
    DeadlineFile,
    DecodeTimeout,
    abandoned_decodes,
    decode_timeout,
    run_with_time_limit,
)

__all__ = [
    "DECODE_TIMEOUT_ENV",
    "DEFAULT_DECODE_TIMEOUT_S",
    "MAX_JSON_BYTES",
    "TOO_SLOW",
    "Deadline",
    "DeadlineFile",
    "DecodeTimeout",
    "FileTooLargeError",
    "NotRegularFileError",
    "abandoned_decodes",
    "atomic_write",
    "decode_timeout",
    "nonblocking_opener",
    "parse_json",
    "read_json_file",
    "read_small_file",
    "run_with_time_limit",
]
