"""The Wilson interval against published values and its edge cases."""

from __future__ import annotations

import pytest

from tl_core.common import format_accuracy, wilson_interval


def test_matches_a_published_example():
    # Newcombe (1998), Statistics in Medicine 17:857, table II: 81/263 -> 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4)
    assert high == pytest.approx(0.3662, abs=5e-4)


def test_a_perfect_score_on_few_images_is_far_from_certain():
    low, high = wilson_interval(9, 9)
    assert high == 1.0
    assert 0.65 < low < 0.72  # 9 of 9 is consistent with about 70 % accuracy
    wide, narrow = wilson_interval(9, 9)[0], wilson_interval(900, 900)[0]
    assert narrow > 0.99 > wide


def test_zero_images_say_nothing_and_bad_counts_are_refused():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_format_accuracy_names_the_interval_and_the_sample_size():
    assert format_accuracy(1.0, 9) == "100.0% (95 % CI 70%–100%, 9 images)"
    assert format_accuracy(0.0, 1).endswith("1 image)")
