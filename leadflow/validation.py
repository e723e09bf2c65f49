"""Pydantic validation errors as lines that name the field, and what counts as a secret.

Settings, the rules file, lead records and a current process's answers are all
validated by pydantic, and each reports its errors through `describe_errors`, naming
the field its own way (an environment variable, a rules key, a record field). The
value that failed is shown when it helps (a scalar the message does not already
quote) and never for a field that is, or is named like, a secret: `SECRET_NAME` is
also what the logs redact by (leadflow.logging).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import SecretStr
from pydantic_core import ErrorDetails

SECRET_NAME = re.compile(r"token|secret|password|api_key|authorization|cookie", re.IGNORECASE)

Location = tuple[int | str, ...]

# A validator that checks a section names the key inside it: "territories.1.team: ..."
_INNER_KEY = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.DOTALL)
_SCALARS = (str, int, float, bool)


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc)


def describe_errors(
    errors: Iterable[ErrorDetails],
    *,
    name: Callable[[Location], str] = dotted,
    missing: str = "required, missing",
    hidden: Callable[[Location], bool] = lambda _loc: False,
) -> list[str]:
    """One `<name>: <what is wrong> (got <value>)` line per error.

    `name` turns a location into what the user fixes; `missing` is said of a required
    field that is absent; `hidden(loc)` withholds the value of a field beyond those
    named like secrets (e.g. one typed SecretStr)."""
    lines = []
    for error in errors:
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        inner = _INNER_KEY.match(message)
        if inner and loc:
            loc, message = (*loc, *inner[1].split(".")), inner[2]
        key = name(loc)
        if error["type"] == "missing":
            message = missing
        elif error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif _shows_input(error, loc, message, hidden):
            message += f" (got {shown_value(error['input'])})"
        lines.append(f"{key}: {message}" if key else message)
    return lines


SHOWN_CHARS = 80  # of a bad value, in a reason: enough to find it, never a 50 MB cell


def shown_value(value: object) -> str:
    """`repr(value)`, cut to SHOWN_CHARS with the full length said."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _shows_input(
    error: ErrorDetails, loc: Sequence[int | str], message: str, hidden: Callable[[Location], bool]
) -> bool:
    value: Any = error.get("input")
    if not isinstance(value, _SCALARS) or isinstance(value, SecretStr):
        return False
    if any(is_secret_name(str(part)) for part in loc) or hidden(tuple(loc)):
        return False
    return repr(value) not in message
