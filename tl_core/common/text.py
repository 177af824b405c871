"""Text for people: counts in words ("1 image", "2 classes"), sizes, and names made safe to
show in Markdown."""

from __future__ import annotations

import re


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


# What makes Markdown out of plain text anywhere in a line: emphasis, code, links, HTML,
# strikethrough, maths, tables, entities, and autolinked addresses (e-mail, "x://", "www.").
# A "_" between two letters or digits (tf_efficientnet_lite0) never starts emphasis, so it
# stays as it is; other sentence punctuation (. , : ' ( ) %) cannot form Markdown inside a line.
_MARKDOWN_INLINE = re.compile(r"[\\`*\[\]<>~$|&@]|(?<![^\W_])_|_(?![^\W_])|:(?=//)|(?<=www)\.")
# What makes a block when the text starts a line: a heading, a list, a quote, an underline.
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+[.)])")


def escape_markdown(text: str) -> str:
    """``text`` made to render literally wherever Streamlit reads Markdown.

    Class, file and run names come from users (folder names, uploads): a class named
    ``**bold** [x](javascript:alert(1))`` or ``<b>`` must show as typed, never as bold text,
    a link or HTML. Plain sentences stay readable: only characters that could form Markdown
    are escaped with a backslash, and line breaks become spaces.
    """
    text = " ".join(str(text).splitlines())
    text = _MARKDOWN_INLINE.sub(lambda match: "\\" + match.group(0), text)
    return _MARKDOWN_LINE_START.sub(
        lambda match: f"{match.group(1)}{match.group(2)[:-1]}\\{match.group(2)[-1]}", text
    )


def format_size(num_bytes: int) -> str:
    """A size in bytes as people read it: "0 B", "980 KB", "1.4 GB", "1 GB" (powers of 1024)."""
    size, unit = float(num_bytes), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            break
        size /= 1024
    digits = 0 if unit in ("B", "KB") or size >= 100 else 1
    return f"{size:.{digits}f}".removesuffix(".0") + f" {unit}"
