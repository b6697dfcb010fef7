"""Text from people and the inventory, made literal for the place it goes to.

Two ways out, one each:

* **Markdown** (Prefect artifacts, the approval and revision forms, Markdown reports):
  :func:`md_escape` is the one escaper. Every name, comment, reason, host output or inventory
  value that goes into Markdown upkeep builds passes through it; upkeep's own structure
  (headings, tables, bold labels) is written around it.
* **HTML** (reports, mail): Jinja's autoescape (``tasks.render.template_env``). The only HTML
  that does not come from a template is :func:`markdown_html`, which renders Markdown upkeep
  built (an approval's evidence) for the HTML part of a mail, with raw HTML turned off, so
  any tag in it shows as text.

The Prefect UI renders Markdown with ``marked`` (GFM, line breaks on) and passes raw HTML
through to the page (sanitised, but a link stays a link). So the escaper turns ``&``, ``<``
and ``>`` into entities, which every Markdown renderer shows as the character itself, and
puts a backslash before each character that could start Markdown structure.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Inline structure: escapes, code spans, emphasis, links and images, table cells,
# strikethrough, headings (a trailing ``#`` closes one).
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~#]")
# What starts a block at the beginning of a line: a list item or setext underline, an ordered
# list item ("1." or "1)").
_LEADING_MARK = re.compile(r"^[-+=]")
_LEADING_NUMBER = re.compile(r"^(\d{1,9})([.)])")
_AUTOLINK = re.compile(r"(?i)(://|\bwww\.)")
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def md_escape(text: object, *, limit: int | None = None) -> str:
    """``text`` as literal Markdown on one line, safe in a table cell, a list item or a heading.

    Line breaks become spaces (a table row or list item stays one), ``&<>`` become entities,
    and every character with Markdown meaning gets a backslash. ``limit`` shortens the text
    (before escaping) to that many characters, ending in ``…``.
    """
    one_line = _CONTROL.sub("", _NEWLINES.sub(" ", str(text))).strip()
    if limit is not None and len(one_line) > limit:
        one_line = one_line[: max(limit - 1, 0)].rstrip() + "…"
    escaped = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), one_line)
    escaped = _AUTOLINK.sub(lambda m: m.group().replace(":", "\\:").replace(".", "\\."), escaped)
    escaped = _LEADING_MARK.sub(r"\\\g<0>", escaped)
    escaped = _LEADING_NUMBER.sub(r"\1\\\2", escaped)
    return "".join(_ENTITIES.get(ch, ch) for ch in escaped)


_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def markdown_plain(markdown: str) -> str:
    """Markdown upkeep built, for a plain-text body: the escapes dropped, the entities read.

    The structure (headings, tables, lists) stays as Markdown, which reads well as text; a
    name shows as it was typed. Plain text is never interpreted, so nothing needs escaping.
    """
    return html.unescape(_UNESCAPE.sub(r"\1", markdown))


_CELL = "border: 1px solid #d1d9e0; padding: 4px 8px; text-align: left; vertical-align: top;"
_STYLES = {
    # Mail clients drop <style> blocks: every element carries its own style.
    "table_open": "border-collapse: collapse; margin: 0 0 12px;",
    "th_open": _CELL + " background: #f6f8fa;",
    "td_open": _CELL,
    "blockquote_open": "margin: 0 0 12px; border-left: 4px solid #d1d9e0; padding: 4px 8px;",
    "code_inline": "font-family: 'Courier New', Courier, monospace; background: #f6f8fa;",
    "heading_open": "font-size: 16px; margin: 12px 0 8px;",
    "paragraph_open": "margin: 0 0 8px;",
}


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    # markdown-it's JS defaults: CommonMark plus tables and strikethrough, raw HTML off (a
    # tag is shown as text), no linkify; its link check refuses javascript:, data: and the like.
    return MarkdownIt("js-default")


def markdown_html(markdown: str) -> Markup:
    """Markdown upkeep built, rendered to an HTML fragment with inline styles for a mail.

    Raw HTML in the Markdown is shown as text, never passed through, so the result is safe to
    put into an autoescaped template as it is (hence :class:`Markup`).
    """
    md = _renderer()
    tokens = md.parse(markdown)
    for token in _walk(tokens):
        style = _STYLES.get(token.type)
        if style is not None:
            token.attrSet("style", style)
    return Markup(md.renderer.render(tokens, md.options, {}))  # noqa: S704 - html is off


def _walk(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        out.append(token)
        if token.children:
            out.extend(_walk(token.children))
    return out
