"""The app's settings, persisted as one JSON file in the per-user config folder.

Plain JSON (not QSettings' native formats) so the file is readable, diffable and identical on every
platform, and so tests can point `HUMANAES_CONFIG_DIR` at a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from humanaes_core.culling import CheckRules
from humanaes_core.files import atomic_write
from humanaes_core.formats import LABELS
from humanaes_core.schema import LEVELS

log = logging.getLogger(__name__)

CONFIG_ENV = "HUMANAES_CONFIG_DIR"
THUMBNAILS_ENV = "HUMANAES_THUMBNAILS"
SETTINGS_FILE = "desktop.json"
MAX_RECENT = 10

#: Presets offered in the settings dialog (a local checkpoint folder can be chosen as well).
MODEL_PRESETS = ("KwaiVGI/HumanAesExpert-1B", "KwaiVGI/HumanAesExpert-8B")
#: "4bit" means bitsandbytes NF4 on a CUDA GPU; the others are the compute dtype.
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "4bit")
#: Flag filter names, in the order the toolbar shows them.
FLAG_NAMES: tuple[str, ...] = ("pick", "none", "reject")
#: Where auto-cull ranks photos against each other (humanaes_core.culling.plan.PARTITIONS).
CULL_PER = ("folder", "burst", "all")
SIDECAR_CONVENTIONS = ("auto", "name.xmp", "name.ext.xmp")


def config_dir() -> Path:
    """Where desktop.json lives: `$HUMANAES_CONFIG_DIR`, else the platform's user config folder."""
    env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir("humanaes", appauthor=False))


def thumbnail_dir() -> Path:
    """Disk cache of thumbnails: `$HUMANAES_THUMBNAILS`, else <user cache dir>/humanaes/thumbnails."""
    env = os.environ.get(THUMBNAILS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("humanaes", appauthor=False)) / "thumbnails"


@dataclass
class ScoringSettings:
    """Everything that changes a score card; two different values never share cached cards."""

    model: str = MODEL_PRESETS[0]
    precision: str = "auto"
    device: str = "auto"
    max_tiles: int = 12
    batch_size: int = 8

    @property
    def quantize(self) -> str | None:
        return "4bit" if self.precision == "4bit" else None

    @property
    def dtype(self) -> str:
        """The precision argument of humanaes_core (4-bit picks its own 16-bit compute dtype)."""
        return "auto" if self.precision == "4bit" else self.precision

    def validated(self) -> ScoringSettings:
        """A copy with out-of-range values replaced by defaults: a hand-edited file must not crash the app."""
        default = ScoringSettings()
        return ScoringSettings(
            model=self.model.strip() or default.model,
            precision=self.precision if self.precision in PRECISIONS else default.precision,
            device=self.device.strip() or default.device,
            max_tiles=self.max_tiles if 1 <= self.max_tiles <= 40 else default.max_tiles,
            batch_size=self.batch_size if 1 <= self.batch_size <= 256 else default.batch_size,
        )


@dataclass
class AppSettings:
    """Settings and window state; `load` never fails, `save` replaces the file atomically."""

    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    recursive: bool = True
    recent_folders: list[str] = field(default_factory=list)
    sort_key: str = "overall"
    sort_descending: bool = True
    levels: list[str] = field(default_factory=lambda: list(LEVELS))
    min_score: float = 0.0
    tile_size: int = 184
    flags: list[str] = field(default_factory=lambda: list(FLAG_NAMES))
    min_stars: int = 0
    collapse_bursts: bool = False
    cull_by: str = "percent"  # "percent": keep the top N %; "level": keep at or above a level
    cull_keep_top: float = 30.0
    cull_min_level: str = "good"
    cull_per: str = "folder"
    cull_overwrite_manual: bool = False
    cull_rules: dict = field(default_factory=dict)  # CheckRules.to_dict(): closed eyes, missed focus, misfire
    sidecar_convention: str = "auto"
    keeper_label: str = ""  # colour label given to picks in sidecars ("" none)
    library: str = ""  # a SQLite file or a PostgreSQL URL ("": $HUMANAES_LIBRARY, else the default file)
    geometry: str = ""  # base64 of QWidget.saveGeometry()
    splitter: str = ""  # base64 of QSplitter.saveState()
    path: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        """Read the settings file; a missing or damaged file gives the defaults (and a log line)."""
        path = path or config_dir() / SETTINGS_FILE
        settings = cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings file %s: %s", path, e)
            return settings
        if not isinstance(data, dict):
            return settings
        known = {f.name for f in fields(cls)} - {"scoring", "path"}
        for name in known & data.keys():
            default = getattr(settings, name)
            value = data[name]
            if isinstance(default, bool) or isinstance(value, bool):
                if isinstance(default, bool) and isinstance(value, bool):
                    setattr(settings, name, value)
            elif isinstance(default, float) and isinstance(value, int | float):
                setattr(settings, name, float(value))
            elif isinstance(value, type(default)):
                setattr(settings, name, value)
        scoring = data.get("scoring")
        if isinstance(scoring, dict):
            defaults = asdict(ScoringSettings())
            kwargs = {
                k: v
                for k, v in scoring.items()
                if k in defaults and type(v) is type(defaults[k])  # bool is not accepted as int
            }
            settings.scoring = ScoringSettings(**kwargs).validated()
        settings.levels = [lv for lv in settings.levels if lv in LEVELS]
        settings.recent_folders = [str(p) for p in settings.recent_folders if isinstance(p, str)][:MAX_RECENT]
        settings.min_score = min(max(settings.min_score, 0.0), 1.0)
        settings.flags = [f for f in FLAG_NAMES if f in settings.flags]
        settings.min_stars = min(max(settings.min_stars, 0), 5)
        defaults = cls()
        if settings.cull_by not in ("percent", "level"):
            settings.cull_by = defaults.cull_by
        if not 0 < settings.cull_keep_top <= 100:
            settings.cull_keep_top = defaults.cull_keep_top
        if settings.cull_min_level not in LEVELS:
            settings.cull_min_level = defaults.cull_min_level
        if settings.cull_per not in CULL_PER:
            settings.cull_per = defaults.cull_per
        try:
            CheckRules.from_dict(settings.cull_rules)
        except (TypeError, ValueError):  # a hand-edited sensitivity out of [0, 1]
            settings.cull_rules = {}
        if settings.sidecar_convention not in SIDECAR_CONVENTIONS:
            settings.sidecar_convention = defaults.sidecar_convention
        if settings.keeper_label not in ("", *LABELS):
            settings.keeper_label = defaults.keeper_label
        settings.library = settings.library.strip()
        return settings

    def save(self) -> None:
        """Write atomically (a crash or a full disk never leaves a truncated file, nor a temporary one);
        errors are logged, not raised."""
        path = self.path or config_dir() / SETTINGS_FILE
        data = asdict(self)
        data.pop("path", None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                json.dump(data, f, indent=2, ensure_ascii=False)
        except OSError as e:
            log.warning("could not save settings to %s: %s", path, e)

    def add_recent(self, folder: str) -> None:
        """Most recent first, no duplicates, at most MAX_RECENT."""
        folder = os.path.abspath(folder)
        self.recent_folders = [folder, *(f for f in self.recent_folders if f != folder)][:MAX_RECENT]
