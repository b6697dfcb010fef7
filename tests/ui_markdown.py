"""What the Prefect UI makes of Markdown: its own bundled ``marked``, run with node.

The UI lexes a form's description, an artifact or a deployment's description with the
``marked`` copy in the installed prefect package's UI bundle (GFM, line breaks on), and its
renderer shows ``text``/``escape`` tokens as text, passes ``html`` tokens to the page and
makes ``link`` tokens links. ``tests/ui_markdown.js`` runs that lexer and returns the tokens
with text as the reader sees it, so tests check the real renderer, not an assumption.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import prefect
import pytest

SCRIPT = Path(__file__).with_name("ui_markdown.js")
ASSETS = Path(prefect.__file__).parent / "server" / "ui" / "assets"

# Token types that are markup a reader can click or that run as HTML.
ACTIVE = {"html", "link", "image"}


def ui_tokens(texts: list[str]) -> list[list[dict[str, Any]]]:
    """The UI's token trees for ``texts`` (one list per text)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Prefect UI's Markdown lexer cannot run")
    done = subprocess.run(
        [node, str(SCRIPT), str(ASSETS)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return result


def walk(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every token of the tree, depth first (table cells included)."""
    out: list[dict[str, Any]] = []
    for tok in tokens:
        out.append(tok)
        out += walk(tok.get("tokens", []))
        out += walk(tok.get("items", []))
        for cell in tok.get("header", []):
            out += walk(cell)
        for row in tok.get("rows", []):
            for cell in row:
                out += walk(cell)
    return out


def shown_text(tokens: list[dict[str, Any]]) -> str:
    """The text a reader sees in ``tokens`` (leaf text and escapes, in order)."""
    return "".join(t.get("text", "") for t in walk(tokens) if t["type"] in ("text", "escape"))


def active(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in walk(tokens) if t["type"] in ACTIVE]
