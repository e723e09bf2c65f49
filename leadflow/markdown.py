"""Lead text in markdown (Prefect artifacts): one escaping rule for every artifact.

Lead fields are whatever a form or a file said: an "email" of
`<img src=x onerror=...>|x` must show as text, not become HTML, and must not split a
table row at its `|`. `cell()` makes any value safe inside a table cell or a line.
"""

from __future__ import annotations

import html
import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def cell(value: object) -> str:
    """`value` as literal text: HTML escaped, markdown punctuation backslashed, line
    breaks folded to spaces."""
    text = " ".join(str(value).split())
    text = html.escape(text, quote=False)
    return _MARKDOWN.sub(r"\\\1", text)
