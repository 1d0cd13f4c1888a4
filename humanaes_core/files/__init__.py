"""Files HumanAes writes: one atomic write for every file."""

from humanaes_core.files.atomic import NotRegularFileError, atomic_write

__all__ = ["NotRegularFileError", "atomic_write"]
