"""Presets: the named speed/accuracy trade-offs a photographer picks (measured in BENCHMARKS.md).

Torch-free, so a CLI's --help and its argument checks never import the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from humanaes_core.errors import HumanAesError


@dataclass(frozen=True)
class Preset:
    """A named speed/accuracy trade-off: how many 448 px tiles a photo is cut into at most."""

    name: str
    max_tiles: int
    summary: str


#: Fewer tiles means fewer image tokens through both towers: time per photo falls roughly in proportion.
#: A 3:2 camera photo gets 7 tiles (accurate), 5 (balanced) or 1 (fast); BENCHMARKS.md has the speed and
#: the accuracy cost of each on the synthetic evaluation task.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("accurate", 12, "up to 12 tiles plus a thumbnail, as HumanAesExpert was trained"),
        Preset("balanced", 4, "up to 4 tiles plus a thumbnail"),
        Preset("fast", 1, "the whole photo as one 448 px tile"),
    )
}
DEFAULT_PRESET = "accurate"


def resolve_max_tiles(preset: str | None = None, max_tiles: int | None = None) -> int:
    """The tile limit from a preset name or an explicit number (both only if they agree)."""
    if preset is not None and preset not in PRESETS:
        raise HumanAesError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if max_tiles is None:
        return PRESETS[preset or DEFAULT_PRESET].max_tiles
    if preset is not None and PRESETS[preset].max_tiles != max_tiles:
        raise HumanAesError(
            f"preset {preset!r} means at most {PRESETS[preset].max_tiles} tiles, but max tiles is "
            f"{max_tiles}; give one or the other"
        )
    return max_tiles
