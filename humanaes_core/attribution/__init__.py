"""Why a photo scored what it shows: explanations that add up to the number on screen.

``explanation`` splits the shown overall over the vote's three inputs, the expert head's Face,
Appearance and Environment and their leaves (`explain_card`); ``weights`` measures how much each
dimension weighs in its parent over a set of photos; ``shapley`` holds the exact Shapley arithmetic;
``heads`` reads the few small modules an explanation needs from a checkpoint, never the backbone.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "ABOUT_THE_SAME",
    "NODE_NAMES",
    "NODE_TOOLTIPS",
    "VOTER_INPUTS",
    "Explanation",
    "HeadsAttributor",
    "attributor_for",
    "coalition_shapley",
    "coalition_table",
    "coalition_values",
    "dimension_weights",
    "explain_card",
    "shapley_over_set",
    "shapley_values",
    "voter_inputs",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ABOUT_THE_SAME": "explanation",
        "NODE_NAMES": "explanation",
        "NODE_TOOLTIPS": "explanation",
        "VOTER_INPUTS": "heads",
        "Explanation": "explanation",
        "HeadsAttributor": "heads",
        "attributor_for": "explanation",
        "coalition_shapley": "shapley",
        "coalition_table": "explanation",
        "coalition_values": "shapley",
        "dimension_weights": "weights",
        "explain_card": "explanation",
        "shapley_over_set": "shapley",
        "shapley_values": "shapley",
        "voter_inputs": "heads",
    },
)
