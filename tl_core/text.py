"""Counts in words, so every message reads "1 image" and "2 classes" alike."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` followed by the noun in the right number, with thousands separators.

    Args:
        count: How many.
        singular: The noun for one ("image").
        plural_form: The noun for any other count; defaults to ``singular`` + "s", or + "es"
            after s, x, z, ch and sh ("class" -> "classes").
    """
    if count == 1:
        return f"1 {singular}"
    if plural_form is None:
        sibilant = singular.endswith(("s", "x", "z", "ch", "sh"))
        plural_form = singular + ("es" if sibilant else "s")
    return f"{count:,} {plural_form}"


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with an ellipsis in the middle, keeping both ends.

    File names differ at the start and end ("IMG_2041…0001.jpg"), so both survive.
    """
    if len(text) <= max_chars:
        return text
    if max_chars < 2:
        return "…"[:max_chars]
    tail = (max_chars - 1) // 2
    return f"{text[: max_chars - 1 - tail]}…{text[len(text) - tail :]}"
