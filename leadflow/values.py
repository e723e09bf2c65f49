"""Values as exports write them: sizes, numbers, dates, booleans and countries.

A CRM report, a prospecting tool or an ad platform's lead form writes the same fact in
its own way: a company size as `1,250`, `51-200` or `10,001+`; a date as
`11/20/2026 9:14 AM` (a US org), `20.11.2026` (a German one) or ISO 8601; a flag as
`Yes`, `TRUE` or `1`; a country as `United States`, `USA`, `us` or `Deutschland`.
These functions read each of them into the one form the pipeline uses, or raise
`ValueError` saying what they expected: the caller (leadflow.intake) then drops that
field from the lead with a warning instead of setting the lead aside.

Choices, each documented in the README:

- **A range is its lower bound**: `51-200` is 51, `10,001+` is 10001. Scoring rules
  are thresholds (`min = 200`): the lower bound never claims a company is bigger than
  the export says, an open range (`10,001+`) has no midpoint, and LinkedIn, Meta and
  HubSpot bands all start where the previous one ended, so a band keeps its place.
- **Dates**: `d/m/y` or `m/d/y` is decided per column from all its values
  (`decide_date_order`): a day above 12 settles it. A column no value settles is read
  with LEADFLOW_DATE_ORDER, month first (the US form) unless it says `DMY`. A date
  without a time zone is UTC.
- **Countries** are ISO 3166-1 alpha-2 codes from pycountry (names, official and
  common names, alpha-3 codes, the usual short forms, and the names in a few European
  languages). A value that is not a country is kept as written, never upper-cased.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any, Literal

DateOrder = Literal["MDY", "DMY"]
DEFAULT_DATE_ORDER: DateOrder = "MDY"

# --- numbers and company sizes -------------------------------------------------------

# `1,250`, `1.250` (German), `1 250` and `1 250` (French): groups of three digits.
_GROUPED = re.compile(r"^\d{1,3}(?:([,.\u00a0\u202f ])\d{3})(?:\1\d{3})*$")
_PLAIN = re.compile(r"^\d+(?:[.,]\d+)?$")
_SUFFIX = re.compile(r"^(.*?)\s*([kKmM])$")
_WORDS = re.compile(
    r"\s*\b(?:employees?|people|persons|staff|emp|headcount|fte)\b\.?\s*$", re.IGNORECASE
)
_RANGE = re.compile(r"^(.+?)\s*(?:-|\u2013|\u2014|\bto\b|\.\.)\s*(.+)$", re.IGNORECASE)
_OPEN_ABOVE = re.compile(r"^(?:(.+?)\s*\+|(?:>=?|over|more than|above)\s*(.+))$", re.IGNORECASE)
_OPEN_BELOW = re.compile(r"^(?:<=?|under|less than|fewer than|up to)\s*(.+)$", re.IGNORECASE)


def parse_number(value: Any) -> float:
    """A number as a spreadsheet or a JSON body writes it: `1,250`, `1.250,5`, `4`,
    `12.5`, `1.2k`. Raises ValueError for anything else (`lots`, `nan`, ``)."""
    if isinstance(value, bool):
        raise ValueError("a yes/no value, not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        number = _number_text(value)
    else:
        raise ValueError(f"a {type(value).__name__}, not a number")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return number


def _number_text(value: str) -> float:
    text = value.strip().replace("\u2212", "-")
    negative = text.startswith("-")
    text = text.lstrip("+-").strip()
    multiplier = 1.0
    suffixed = _SUFFIX.match(text)
    if suffixed:
        text, multiplier = suffixed[1], 1e3 if suffixed[2] in "kK" else 1e6
    grouped = _GROUPED.match(text)
    if grouped:
        number = float(text.replace(grouped[1], ""))
    elif "," in text and "." in text:  # 1,250.5 or 1.250,5: the last one is the decimal
        decimal = max(text.rfind(","), text.rfind("."))
        whole, fraction = text[:decimal], text[decimal + 1 :]
        whole = whole.replace(",", "").replace(".", "")
        if not (whole.isdigit() and fraction.isdigit()):
            raise ValueError("not a number")
        number = float(f"{whole}.{fraction}")
    elif _PLAIN.match(text):
        number = float(text.replace(",", "."))
    else:
        raise ValueError("not a number")
    return (-number if negative else number) * multiplier


def parse_count(value: Any) -> int:
    """A whole count such as a company's employees, as exports write it: `250`,
    `1,250`, `250.0`, a range (`51-200`, `1,001-5,000`, `10,001+`, `5K-10K`, `<10`)
    read as its lower bound (see the module docstring), with or without a trailing
    `employees`. Raises ValueError saying what was expected."""
    if isinstance(value, str):
        text = _WORDS.sub("", value.strip()).strip()
        if not text:
            raise ValueError("not a number or a range such as 51-200")
        number = _lower_bound(text)
    else:
        number = parse_number(value)
    if number < 0:
        raise ValueError("a negative count")
    if number != int(number):
        raise ValueError("not a whole number")
    return int(number)


def _lower_bound(text: str) -> float:
    try:
        return parse_number(text)
    except ValueError:
        pass
    below = _OPEN_BELOW.match(text)
    if below:
        parse_number(below[1])  # a number is expected after `<`
        return 1.0  # `<10`: at least one person
    above = _OPEN_ABOVE.match(text)
    if above:
        return _bound(above[1] or above[2])
    ranged = _RANGE.match(text)
    if ranged and not text.startswith("-"):
        low, high = _bound(ranged[1]), _bound(ranged[2])
        if low > high:
            raise ValueError("a range whose start is above its end")
        return low
    raise ValueError("not a number or a range such as 51-200")


def _bound(text: str) -> float:
    try:
        return parse_number(_WORDS.sub("", text).strip())
    except ValueError:
        raise ValueError("not a number or a range such as 51-200") from None


# --- booleans ------------------------------------------------------------------------

_TRUE = {"true", "yes", "y", "1", "on", "x", "checked", "✓", "✔", "ja", "oui", "si", "sí"}
_FALSE = {"false", "no", "n", "0", "off", "", "unchecked", "nein", "non"}


def parse_bool(value: Any) -> bool:
    """`Yes`/`No`, `TRUE`/`FALSE`, `1`/`0`, `y`, `on`, `x`, a ticked box; an empty cell
    is no. Raises ValueError for anything else (`maybe`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not yes or no (Yes/No, TRUE/FALSE or 1/0)")


# --- dates ---------------------------------------------------------------------------

# d/m/y or m/d/y with `/`, `.` or `-`, a 2- or 4-digit year, and anything after it.
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})\b(.*)$")
_YEAR = re.compile(r"(?<!\d)(?:1[89]|2\d)\d{2}(?!\d)")
_EPOCH_RANGE = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01, in seconds
# The time zone names US and European CRMs print after a time (`9:14 AM PST`).
_ZONES = {
    name: timezone(timedelta(hours=hours))
    for name, hours in {
        "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "CET": 1, "CEST": 2, "EET": 2,
        "EEST": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
        "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "IST": 5.5,
    }.items()
}  # fmt: skip


_NOT_A_DATE = "not a date with a year (such as 2026-11-20, 11/20/2026 or 20.11.2026)"


def parse_datetime(value: Any, order: DateOrder | None = None) -> datetime:
    """A point in time as exports write it: ISO 8601, `11/20/2026 9:14 AM` (US),
    `20.11.2026 09:14` or `20/11/2026` (European), `Nov 20, 2026`, a Unix time in
    seconds or milliseconds, or a date (midnight). `order` says how to read a
    `01/02/2026` that could be either (default month first). No zone: UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = _epoch(float(value))
    elif isinstance(value, str):
        moment = _datetime_text(value.strip(), order or DEFAULT_DATE_ORDER)
    else:
        raise ValueError(f"a {type(value).__name__}, not a date")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _epoch(seconds: float) -> datetime:
    if seconds > _EPOCH_RANGE[1]:
        seconds /= 1000  # milliseconds, as JavaScript and most webhooks send them
    if not _EPOCH_RANGE[0] <= seconds <= _EPOCH_RANGE[1]:
        raise ValueError("a number that is not a date")
    return datetime.fromtimestamp(seconds, UTC)


def _datetime_text(text: str, order: DateOrder) -> datetime:
    if not text:
        raise ValueError("empty")
    if text.isdigit() and len(text) in (10, 13):
        return _epoch(float(text))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    from dateutil import parser

    numeric = _NUMERIC_DATE.match(text)
    if numeric:
        first, second, year, rest = int(numeric[1]), int(numeric[3]), numeric[4], numeric[5]
        month, day = _month_day(first, second, order)
        if len(year) == 2:
            year = f"20{year}"
        text = f"{year}-{month:02d}-{day:02d}{rest}"
    elif not _YEAR.search(text):
        raise ValueError(_NOT_A_DATE)
    try:
        return parser.parse(text, default=datetime(2000, 1, 1), tzinfos=_ZONES)
    except (ValueError, OverflowError, parser.ParserError):
        raise ValueError(_NOT_A_DATE) from None


def _month_day(first: int, second: int, order: DateOrder) -> tuple[int, int]:
    """Which of `first/second` is the month: the one that can be; else `order`'s."""
    if first > 12 >= second:
        return second, first
    if second > 12 >= first:
        return first, second
    return (first, second) if order == "MDY" else (second, first)


@dataclass
class DateColumn:
    """What the values of one date column say about their order, as they are seen
    (`see`), and the order decided from all of them (`decide`)."""

    day_first: str | None = None  # the first value that is only a date day first
    month_first: str | None = None
    dotted: bool = False  # `20.11.2026`: the German, Swiss, Nordic and Russian form
    numeric: int = 0  # values in the d/m/y or m/d/y form
    examples: list[str] = field(default_factory=list)

    def see(self, value: Any) -> None:
        if not isinstance(value, str):
            return
        found = _NUMERIC_DATE.match(value)
        if not found:
            return
        self.numeric += 1
        first, second = int(found[1]), int(found[3])
        self.dotted |= found[2] == "."
        if first > 12 >= second and self.day_first is None:
            self.day_first = value.strip()
        elif second > 12 >= first and self.month_first is None:
            self.month_first = value.strip()
        elif len(self.examples) < 1:
            self.examples.append(value.strip())

    def decide(self, preferred: DateOrder | None) -> tuple[DateOrder, str]:
        """The order, and why, for the run's report."""
        if self.day_first and not self.month_first:
            return "DMY", f"day first, as {self.day_first!r} shows"
        if self.month_first and not self.day_first:
            return "MDY", f"month first, as {self.month_first!r} shows"
        if self.day_first and self.month_first:
            order = preferred or DEFAULT_DATE_ORDER
            return order, (
                f"both orders appear ({self.month_first!r}, {self.day_first!r}); those that "
                f"could be either are read {_said(order)} (LEADFLOW_DATE_ORDER)"
            )
        if preferred:
            return preferred, f"{_said(preferred)}, from LEADFLOW_DATE_ORDER"
        if self.dotted:
            return "DMY", "day first (dates written with dots, as in 20.11.2026)"
        example = f" ({self.examples[0]!r} could be either)" if self.examples else ""
        return DEFAULT_DATE_ORDER, (
            f"month first: no value decides{example}; set LEADFLOW_DATE_ORDER=DMY if the "
            "day comes first"
        )


def _said(order: DateOrder) -> str:
    return "month first" if order == "MDY" else "day first"


def decide_date_order(values: Iterable[Any], preferred: DateOrder | None = None) -> DateOrder:
    """The order of a column's `d/m/y` dates from all its values (see `DateColumn`)."""
    column = DateColumn()
    for value in values:
        column.see(value)
    return column.decide(preferred)[0]


# --- countries -----------------------------------------------------------------------

# Spellings exports use that pycountry's names, official and common names do not hold.
_COUNTRY_SPELLINGS = {
    "US": ["usa", "u s", "u s a", "us of a", "america", "united states of america", "the us"],
    "GB": ["uk", "u k", "great britain", "britain", "england", "scotland", "wales",
           "northern ireland", "united kingdom of great britain", "gb"],
    "RU": ["russia"],
    "KR": ["korea", "republic of korea", "s korea"],
    "KP": ["n korea"],
    "CZ": ["czech republic"],
    "TR": ["turkey", "turkiye"],
    "CI": ["ivory coast"],
    "MK": ["macedonia"],
    "CD": ["dr congo", "drc", "congo kinshasa", "democratic republic of congo"],
    "CG": ["congo brazzaville", "republic of congo"],
    "PS": ["palestine"],
    "VA": ["vatican", "vatican city", "holy see"],
    "BN": ["brunei"],
    "CV": ["cape verde"],
    "SZ": ["swaziland"],
    "MM": ["burma"],
    "NL": ["holland", "the netherlands"],
    "AE": ["uae", "u a e", "emirates"],
    "HK": ["hong kong sar"],
    "MO": ["macau"],
    "TW": ["republic of china"],
    "CN": ["prc", "china mainland", "mainland china"],
    "BS": ["the bahamas"],
    "GM": ["the gambia"],
    "VN": ["viet nam"],
    "LA": ["lao", "lao pdr"],
    "SY": ["syria"],
    "FM": ["micronesia"],
}  # fmt: skip
# Languages whose country names pycountry's translations add (exports from European
# orgs write `Deutschland`, `Allemagne`, `Alemania`, `Duitsland`).
_NAME_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt", "sv", "da", "pl")


def _key(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c)).replace("&", " and ")
    return re.sub(r"[^0-9a-z]+", " ", folded).strip()


@cache
def _countries() -> dict[str, str]:
    import gettext

    import pycountry

    found: dict[str, str] = {}

    def add(name: str | None, code: str) -> None:
        if name:
            key = _key(name)
            found.setdefault(key, code)
            found.setdefault(key.removeprefix("the "), code)
            if ", " in name:  # "Korea, Republic of" -> "Republic of Korea"
                head, _, tail = name.partition(", ")
                found.setdefault(_key(f"{tail} {head}"), code)

    countries = list(pycountry.countries)
    for country in countries:
        code = country.alpha_2
        found[_key(code)] = code
        found[_key(country.alpha_3)] = code
        for attribute in ("name", "common_name", "official_name"):
            add(getattr(country, attribute, None), code)
    for code, spellings in _COUNTRY_SPELLINGS.items():
        for spelling in spellings:
            found[_key(spelling)] = code
    for language in _NAME_LANGUAGES:
        try:
            names = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language])
        except OSError:
            continue
        for country in countries:
            for attribute in ("name", "common_name"):
                name = getattr(country, attribute, None)
                if name:
                    add(names.gettext(name), country.alpha_2)
    return found


def country_code(value: Any) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country as exports write it (`United States`,
    `USA`, `us`, `U.K.`, `Deutschland`, `Korea, Republic of`), or None."""
    if not isinstance(value, str):
        return None
    return _countries().get(_key(value))
