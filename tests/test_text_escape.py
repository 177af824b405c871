"""Names shown in Markdown render as typed; sizes read as people write them."""

from __future__ import annotations

import re

import pytest

from tl_core.common import escape_markdown, format_size

# Markdown that a bare (unescaped) character would start.
MARKUP = re.compile(r"(?<!\\)[*`\[\]<>~$|&@]")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@pytest.mark.parametrize(
    "name",
    [
        "**bold** [x](javascript:alert(1))",
        "<b>",
        "<img src=x onerror=alert(1)>",
        "![pic](http://evil.example/x.png)",
        "`code`",
        "~~gone~~",
        "$x^2$",
        "a | b",
        "&lt;b&gt;",
        "me@example.com",
        "_under_",
        ":red[coloured]",
    ],
)
def test_markup_in_a_name_is_escaped_and_nothing_else_changes(name):
    escaped = escape_markdown(name)
    assert not MARKUP.search(escaped), escaped
    assert unescape(escaped) == name  # shows exactly what was typed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("12. twelfth", "12\\. twelfth"),
        ("3) third", "3\\) third"),
        ("> quote", "\\> quote"),
        ("see http://evil.example", "see http\\://evil.example"),
        ("www.evil.example", "www\\.evil.example"),
        ("two\nlines", "two lines"),
        ("_under_ and __bold__", "\\_under\\_ and \\_\\_bold\\_\\_"),
    ],
)
def test_blocks_and_autolinks_are_escaped(name, expected):
    assert escape_markdown(name) == expected


@pytest.mark.parametrize(
    "text",
    [
        "tf_efficientnet_lite0",
        "Class 'red' has only 6 images; 10 or more per class give more reliable results.",
        "not known to the model: purple",
        "broken.png: cannot identify image file (95 %)",
        "Classes are imbalanced (12.0x): 'a' has 120 images, 'b' only 10.",
    ],
)
def test_plain_sentences_and_names_are_left_as_they_are(text):
    assert escape_markdown(text) == text


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KB"),
        (50 << 20, "50 MB"),
        (int(1.44 * 2**30), "1.4 GB"),
        (1024 << 20, "1 GB"),
        (3 << 40, "3 TB"),
    ],
)
def test_sizes_read_as_people_write_them(num_bytes, text):
    assert format_size(num_bytes) == text
