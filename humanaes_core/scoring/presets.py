"""Presets: the named speed/accuracy trade-offs a photographer picks (measured in BENCHMARKS.md), and
"release", which reproduces the released HumanAesExpert code's inputs to compare with it.

Torch-free, so a CLI's --help and its argument checks never import the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from humanaes_core.errors import HumanAesError


@dataclass(frozen=True)
class Preset:
    """A named speed/accuracy trade-off: how many 448 px tiles a photo is cut into at most.

    `release_parity`: decode as the release's load_image (no EXIF rotation, ICC or alpha handling, no
    draft decoding), ask the release's question, fp16 on CUDA, so pixels and token ids equal what the
    release's own code feeds the model (docs/models.md lists what the other presets do differently).
    """

    name: str
    max_tiles: int
    summary: str
    release_parity: bool = False


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
#: Not a speed trade-off: the release's own inputs (12 tiles as its load_image), to compare scores with it.
RELEASE_PRESET = Preset(
    "release", 12, "the released code's pixels, question and fp16 (to compare with it)", release_parity=True
)
#: Every name --preset accepts.
ALL_PRESETS: dict[str, Preset] = {**PRESETS, RELEASE_PRESET.name: RELEASE_PRESET}


def get_preset(name: str | None) -> Preset:
    """The preset called `name` (None: the default one)."""
    if name is not None and name not in ALL_PRESETS:
        raise HumanAesError(f"unknown preset {name!r}; choose one of {', '.join(ALL_PRESETS)}")
    return ALL_PRESETS[name or DEFAULT_PRESET]


def resolve_max_tiles(preset: str | None = None, max_tiles: int | None = None) -> int:
    """The tile limit from a preset name or an explicit number (both only if they agree)."""
    chosen = get_preset(preset)
    if max_tiles is None:
        return chosen.max_tiles
    if preset is not None and chosen.max_tiles != max_tiles:
        raise HumanAesError(
            f"preset {preset!r} means at most {chosen.max_tiles} tiles, but max tiles is "
            f"{max_tiles}; give one or the other"
        )
    return max_tiles


def resolve_precision(preset: str | None, precision: str, cuda: bool) -> str:
    """The precision to load in: the release preset runs fp16 on CUDA and fp32 on the CPU, as the
    release does; any other preset leaves `precision` as given."""
    if not get_preset(preset).release_parity:
        return precision
    wanted = "fp16" if cuda else "fp32"
    if precision not in ("auto", wanted):
        raise HumanAesError(
            f"preset {preset!r} runs in {wanted} on this device, but precision is {precision}; "
            "give one or the other"
        )
    return wanted
