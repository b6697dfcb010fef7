"""The one Markdown escaper and the Markdown-to-mail renderer, against hostile text.

Each hostile string goes through ``md_escape`` and then through the renderers it reaches:
the Prefect UI's own Markdown lexer (forms, artifacts, deployment descriptions) and
markdown-it (the HTML part of the approval mail). The reader must see the string itself,
and nothing in it may become a tag, a link or Markdown structure.
"""

from __future__ import annotations

import re

import pytest

from tests.ui_markdown import active, shown_text, ui_tokens, walk
from upkeep.domain.markup import markdown_html, markdown_plain, md_escape

HOSTILE = [
    "<a href=x>click</a>",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "a | b | c",
    "*bold* and _it_ and **strong**",
    "`code` and ```fence```",
    "[x](javascript:alert(1))",
    "![img](http://evil.example/x.png)",
    "~~gone~~",
    "# heading",
    "- list item",
    "+ plus",
    "1. ordered",
    "12) ordered",
    "> quote",
    "=== setext",
    "AT&T &lt;already escaped&gt; &amp; &#60;",
    "see https://evil.example/phish and www.evil.example",
    "back\\slash \\| \\*",
    "trailing hash #",
    "<https://evil.example>",
    "line one\nline two\r\n\r\nline three",
]


def one_line(text: str) -> str:
    return " ".join(re.split(r"\s*[\r\n]+\s*", text.strip()))


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escape_is_one_line_with_no_raw_html(text: str) -> None:
    escaped = md_escape(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert "<" not in escaped and ">" not in escaped
    assert re.search(r"(?<!\\)\|", escaped) is None  # every pipe escaped: cells hold


def test_md_escape_examples() -> None:
    assert md_escape("a|b\r\nc  \n d") == r"a\|b c d"
    assert md_escape("[x](javascript:y) *b* `c`") == r"\[x\](javascript:y) \*b\* \`c\`"
    assert md_escape("<a href=x>") == "&lt;a href=x&gt;"
    assert md_escape("AT&T") == "AT&amp;T"
    assert md_escape("- x") == r"\- x"
    assert md_escape("1. x") == r"1\. x"
    assert md_escape("https://x.example") == r"https\://x.example"
    assert md_escape("web-01.example.com") == "web-01.example.com"  # plain names stay plain


def test_md_escape_shortens_before_escaping() -> None:
    assert md_escape("abcdefghij", limit=5) == "abcd…"
    assert md_escape("<<<<<<<<", limit=3) == "&lt;&lt;…"
    assert md_escape("short", limit=5) == "short"


def test_the_prefect_ui_shows_hostile_text_literally() -> None:
    """Through the UI's own lexer: as a paragraph, a list item, a heading and a table cell."""
    texts = []
    for text in HOSTILE:
        e = md_escape(text)
        texts += [e, f"- {e}", f"## {e}", f"| col |\n|---|\n| {e} |"]
    trees = ui_tokens(texts)
    for i, text in enumerate(HOSTILE):
        paragraph, item, heading, table = trees[4 * i : 4 * i + 4]
        assert [t["type"] for t in paragraph] == ["paragraph"], (text, paragraph)
        assert [t["type"] for t in item] == ["list"] and len(item[0]["items"]) == 1, text
        assert [t["type"] for t in heading] == ["heading"], text
        assert [t["type"] for t in table] == ["table"], text
        (row,) = table[0]["rows"]
        assert len(row) == 1, (text, row)  # the cell held
        for tree in (paragraph, item, heading, row[0]):
            assert active(tree) == [], (text, tree)
            assert shown_text(tree) == one_line(text), (text, tree)
            kinds = {t["type"] for t in walk(tree)}
            assert not kinds & {"em", "strong", "codespan", "del", "blockquote", "code"}, text


def test_the_prefect_ui_would_render_unescaped_html() -> None:
    """The reason for all this: raw text with a tag becomes live HTML in the UI."""
    (tree,) = ui_tokens(["<a href=x>click</a>"])
    assert [t["type"] for t in active(tree)] == ["html", "html"]


@pytest.mark.parametrize("text", HOSTILE)
def test_mail_html_shows_hostile_text_literally(text: str) -> None:
    html = markdown_html(f"| col |\n|---|\n| {md_escape(text)} |\n\n{md_escape(text)}")
    assert "<a" not in html and "<script" not in html and "<img" not in html
    assert "<em>" not in html and "<strong>" not in html and "<code" not in html
    assert html.count("<td") == 1  # the cell held
    assert html.count("<p") == 1  # and the paragraph stayed one


def test_mail_html_refuses_raw_html_even_unescaped() -> None:
    html = markdown_html('<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n<b onclick="x">')
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<b" not in html and 'href="javascript' not in html


def test_mail_html_renders_upkeeps_markdown_with_inline_styles() -> None:
    html = markdown_html("### Plan\n\n- **Window:** Q4\n\n| host | ok |\n|---|---|\n| web1 | yes |")
    assert "<h3" in html and "<strong>Window:</strong>" in html and "<li>" in html
    assert re.search(r'<table style="[^"]*border-collapse', html)
    assert re.search(r'<td style="[^"]*border[^"]*">web1</td>', html)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_text_gets_the_text_back(text: str) -> None:
    assert markdown_plain(md_escape(text)) == one_line(text)
