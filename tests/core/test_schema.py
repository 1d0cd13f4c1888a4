import pytest

from humanaes_core import schema
from humanaes_core.model.prompts import DIMS_QUESTIONS, OVERALL_QUESTIONS, dims_answer, overall_answer


def test_twelve_dimensions_in_display_order():
    assert "".join(d.letter for d in schema.DIMENSIONS) == "ABCDEFGHIJKL"
    assert tuple(schema.BY_LETTER[c].key for c in "ABCDEGHIK") == schema.LEAF_KEYS
    assert schema.BY_LETTER["F"].children == tuple(schema.BY_LETTER[c].key for c in "ABCDE")
    assert schema.BY_LETTER["J"].children == tuple(schema.BY_LETTER[c].key for c in "GHI")
    assert schema.BY_LETTER["L"].children == tuple(schema.BY_LETTER[c].key for c in "FJK")


def test_official_order_swaps_environment_and_general_appearance():
    letters = [next(d.letter for d in schema.DIMENSIONS if d.key == k) for k in schema.OFFICIAL_ORDER]
    assert letters == list("ABCDEFGHIKJL")


def test_official_mapping_both_ways_by_name():
    official = [i / 100 for i in range(12)]  # index 9 is Environment, index 10 General Appearance
    dims = schema.from_official(official)
    assert list(dims) == list(schema.KEYS)
    assert dims["environment"] == 0.09
    assert dims["general_appearance_aesthetic"] == 0.10
    assert dims["overall"] == 0.11
    assert dims["looks"] == 0.08
    assert schema.to_official(dims) == official


def test_official_names_map_by_name():
    for i, name in enumerate(schema.OFFICIAL_ANSWER_NAMES):
        assert schema.key_for_official_name(name) == schema.OFFICIAL_ORDER[i]
    assert schema.key_for_official_name("  environment ") == "environment"
    assert (
        schema.key_for_official_name("General  Appearance Aesthetic Score") == "general_appearance_aesthetic"
    )
    with pytest.raises(KeyError):
        schema.key_for_official_name("Hair")


def test_wrong_lengths_and_missing_keys_fail():
    with pytest.raises(ValueError):
        schema.from_official([0.5] * 11)
    with pytest.raises(KeyError):
        schema.to_official({"overall": 0.5})


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.0, "bad"),
        (0.1999, "bad"),
        (0.2, "poor"),
        (0.3999, "poor"),
        (0.4, "fair"),
        (0.6, "good"),  # 0.6 * 5 rounds to 2.9999…; the boundary must still be 'good'
        (0.7999, "good"),
        (0.8, "excellent"),
        (1.0, "excellent"),
        (-0.1, "bad"),
        (1.3, "excellent"),
    ],
)
def test_level_boundaries_closed_on_the_left(score, level):
    assert schema.score_to_level(score) == level


def test_level_indices():
    assert [schema.level_to_index(w) for w in schema.LEVELS] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        schema.level_to_index("great")
    with pytest.raises(ValueError):
        schema.score_to_level(float("nan"))


def test_prompts_and_answers():
    assert len(OVERALL_QUESTIONS) == len(DIMS_QUESTIONS) == 5
    assert DIMS_QUESTIONS[1] == "Rate the aesthetics of this human picture from 12 different dimensions."
    assert (
        DIMS_QUESTIONS[0]
        == "Can you evaluate the aesthetics of the human image from 12 different dimensions?"
    )
    assert overall_answer(0.65) == "The aesthetics of the human image is good"
    dims = schema.from_official([0.1, 0.3, 0.5, 0.7, 0.9, 0.1, 0.3, 0.5, 0.7, 0.95, 0.05, 0.5])
    lines = dims_answer(dims).split("\n")
    assert len(lines) == 12
    assert lines[0] == "1. Facial Brightness : bad"
    assert lines[9] == "10. Environment : excellent"
    assert lines[10] == "11. General Appearance Aesthetic Score : bad"
    assert lines[11] == "12. Comprehensive Aesthetic Score : fair"
