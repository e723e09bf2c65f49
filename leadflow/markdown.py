"""Markdown for Prefect artifacts, with text from outside escaped.

Lead records come from exports and web forms: an email such as
`<img src=x onerror=alert(1)>|x@evil.test` must read as text in the UI, not end a
table cell, start a heading or become HTML. `escape()` is the one place that makes a
value safe in markdown (a table cell included); `table()` builds a table whose every
cell goes through it. Our own markup (headings, bold) is written around escaped text,
never inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# The ASCII punctuation that can start markup inside a line: emphasis, code, links,
# images, a heading's closing #s, table cells, HTML and entities. Lead text never
# starts a line here (it follows a table's "| " or our own words), so list markers
# (-, +, 1.) need no escape.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f]+")


def escape(value: Any) -> str:
    """`value` as literal markdown text on one line: `None` reads as empty."""
    if value is None:
        return ""
    text = _LINE_BREAKS.sub(" ", str(value))
    return _SPECIAL.sub(r"\\\1", text)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; headers are ours, every cell is escaped."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
