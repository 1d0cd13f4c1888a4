"""HumanAes desktop app (PySide6). Talks to humanaes_core only through its public API."""
