"""Counts in words."""

import pytest

from tl_core.common import plural, shorten


@pytest.mark.parametrize(
    ("count", "word", "expected"),
    [
        (1, "image", "1 image"),
        (0, "image", "0 images"),
        (2, "class", "2 classes"),
        (1, "class", "1 class"),
        (12_345, "box", "12,345 boxes"),
        (3, "batch", "3 batches"),
    ],
)
def test_plural_picks_the_noun_for_the_count(count, word, expected):
    assert plural(count, word) == expected


def test_plural_takes_an_irregular_form():
    assert plural(2, "child", "children") == "2 children"
    assert plural(1, "child", "children") == "1 child"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("cat.png", 13, "cat.png"),
        ("IMG_20240512_141501_0001.jpg", 13, "IMG_20…01.jpg"),
        ("abcdef", 4, "ab…f"),
        ("abcdef", 1, "…"),
    ],
)
def test_shorten_keeps_both_ends_and_the_limit(text, limit, expected):
    assert shorten(text, limit) == expected
    assert len(shorten(text, limit)) <= limit
