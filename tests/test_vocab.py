"abovqa.vocab: the one question classifier (used by metrics, split and the metadata cross-check) and the shared vocabulary."
import pytest

from abovqa import vocab as V


@pytest.mark.parametrize("q,t", [
    # the cases issue #14 names (metrics and generate's cross-check used to disagree on the first two)
    ("What shapes are printed on it?", "shape"), ("What is it made out of?", "material"),
    ("What pattern does it have?", "pattern"), ("Is it made of wood?", "yes/no"), ("Is it red or blue?", "color"),
    ("How many legs?", "count"), ("What colour is it?", "color"), ("", "other"),
    # the rules one by one
    ("What color is the mug?", "color"), ("Which colours are on the case?", "color"), ("What hue is it?", "color"),
    ("What material is the chair made of?", "material"), ("What is the fabric of the shoe?", "material"),
    ("What is the lamp made from?", "material"), ("What is the case made with?", "material"),
    ("What shape is the bottle?", "shape"), ("Is it round or square shaped?", "shape"),
    ("Which patterns are on the shoe?", "pattern"), ("Is it patterned or plain?", "pattern"),
    ("What pattern is on the shoe?", "pattern"), ("How many legs does the chair have?", "count"),
    ("What is the number of buttons?", "count"), ("Is the mug red?", "yes/no"), ("Are the shoes leather?", "yes/no"),
    ("Does the case have a logo?", "yes/no"), ("Can it hold water?", "yes/no"), ("Is it striped?", "yes/no"),
    ("Is the mug made of wood or metal?", "material"), ("Is it wood or metal?", "material"),
    ("Is it solid or striped?", "pattern"), ("Is it a mug or a chair?", "other"), ("What brand is it?", "other"),
    (None, "other"), (float("nan"), "other")])
def test_question_type(q, t):
    assert V.question_type(q) == t and t in V.QUESTION_TYPES


def test_users_share_one_classifier():
    from abovqa import metrics, split
    assert metrics.question_type is V.question_type and metrics.QUESTION_TYPES is V.QUESTION_TYPES
    assert split.question_type is V.question_type


def test_attribute_columns():
    assert set(V.ATTRIBUTE_COLUMNS) == {"color", "material", "shape", "pattern"} <= set(V.QUESTION_TYPES)
    assert V.ATTRIBUTE_COLUMNS["material"] == ("material", "fabric_type")


def test_vocabulary_moved_from_sample():
    from abovqa import sample
    assert sample.COLORS is V.COLORS and sample.PRODUCT_TYPES is V.PRODUCT_TYPES
    assert not {"COLORS", "SHAPES", "PATTERNS", "MATERIALS", "PRODUCT_TYPES"} & set(sample.__all__)
    assert all(len(w.split()) == 1 for w in V.COLORS + V.SHAPES + V.PATTERNS + V.MATERIALS + list(V.PRODUCT_TYPES.values()))
