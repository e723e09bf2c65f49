"""When a rep can take a lead: working hours in their own time zone, days off, time
away, and the operator's override file.

The round robin (leadflow.assignment) asks one question per rep and lead: is this rep
able to take a lead at this instant, and if not, why (the reason is stored with the
assignment, so "why did I not get it" has an answer too). Everything here is a pure
function of the rules, the overrides and the instant it is given: no clock is read,
so a test or a backtest can ask about any moment, and the answer for a past moment
does not change with the day it is asked.

Time zones are IANA names read with `zoneinfo`; a wall-clock shift ("09:00-17:00 in
Europe/Berlin") is compared in the rep's local time, so it moves with daylight saving
time instead of being an hour off for half the year. Dates (days off, a day-long
absence) are days in the rep's time zone too; a rep with no working hours lives in UTC.

Overrides are a small TOML file an operator edits while leadflow runs (someone is off
sick today): `AvailabilityOverrides` reads it again whenever it changed, and a broken
edit keeps the last good version with a warning rather than stopping the routing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadflow.logging import get_logger
from leadflow.validation import describe_errors

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead `next_start` looks for a shift: two weeks covers any weekly pattern
# with a week's leave in it; a rep away longer is not worth holding a lead for.
LOOK_AHEAD = timedelta(days=14)


class AvailabilityError(ValueError):
    """The override file cannot be used; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or ValueError saying what a valid one looks like."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'"
        ) from None


class WorkingHours(_Strict):
    """A weekly shift in local time: `days` from `start` to `end` in `timezone`.
    An `end` at or before `start` is a night shift that ends the next morning."""

    timezone: str
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]), min_length=1)
    start: time
    end: time

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    def shift_containing(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The shift (start, end) that `at` falls in, or None when off shift."""
        local = at.astimezone(self.zone)
        # a night shift that began yesterday may still be running
        for day in (local.date(), local.date() - timedelta(days=1)):
            start, end = self._shift_on(day)
            if start is not None and end is not None and start <= at < end:
                return start, end
        return None

    def next_start(self, at: datetime) -> datetime | None:
        """The first shift start at or after `at` (within LOOK_AHEAD)."""
        day = at.astimezone(self.zone).date()
        for offset in range(LOOK_AHEAD.days + 1):
            start, _ = self._shift_on(day + timedelta(days=offset))
            if start is not None and start >= at:
                return start
        return None

    def _shift_on(self, day: date) -> tuple[datetime, datetime] | tuple[None, None]:
        if WEEKDAYS[day.weekday()] not in self.days:
            return None, None
        start = _wall(day, self.start, self.zone)
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        return start, _wall(end_day, self.end, self.zone)


def _wall(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """`clock` on `day` in `tz`, as UTC. A wall time that does not exist (skipped by
    daylight saving) is read with the offset before the change, as zoneinfo does
    (fold=0), so 02:30 on the spring-forward day is 03:30 local."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


class Away(_Strict):
    """Time away: from `start` until `end`. A date is a whole day in the rep's time
    zone (`end` included); a date-time is an instant (`end` excluded). No `end`: until
    the entry is removed."""

    start: date | datetime
    end: date | datetime | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and _as_date(self.end) < _as_date(self.start):
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    def span(self, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
        start = _instant(self.start, tz, end=False)
        return start, None if self.end is None else _instant(self.end, tz, end=True)

    def describe(self, tz: ZoneInfo) -> str:
        _, end = self.span(tz)
        until = f"until {end.astimezone(tz):%Y-%m-%d %H:%M %Z}" if end else "until further notice"
        return f"away {until}" + (f" ({self.reason})" if self.reason else "")


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _instant(value: date | datetime, tz: ZoneInfo, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class Calendar:
    """One rep's availability: the rules' flag, hours, days off and time away, with
    the operator's overrides added. `absent` and `off_shift` give the reason or None."""

    rep: str
    available: bool = True
    hours: WorkingHours | None = None
    days_off: frozenset[date] = frozenset()
    away: tuple[Away, ...] = field(default_factory=tuple)

    @property
    def zone(self) -> ZoneInfo:
        return self.hours.zone if self.hours else ZoneInfo("UTC")

    def absent(self, at: datetime) -> str | None:
        """Why the rep is away for the day (not merely off shift), or None."""
        if not self.available:
            return "marked unavailable in the rules"
        local_day = at.astimezone(self.zone).date()
        if local_day in self.days_off:
            return f"day off {local_day.isoformat()}"
        for away in self.away:
            start, end = away.span(self.zone)
            if start <= at and (end is None or at < end):
                return away.describe(self.zone)
        return None

    def off_shift(self, at: datetime) -> str | None:
        """Why the rep is outside working hours at `at`, or None (no hours: always on)."""
        if self.hours is None or self.hours.shift_containing(at) is not None:
            return None
        local = at.astimezone(self.zone)
        hours = self.hours
        return (
            f"off shift ({local:%a %H:%M %Z}; works {','.join(hours.days)} "
            f"{hours.start:%H:%M}-{hours.end:%H:%M} {hours.timezone})"
        )

    def day_start(self, at: datetime) -> datetime:
        """Midnight of `at`'s day in the rep's time zone, as UTC: where a daily cap
        starts counting."""
        local_day = at.astimezone(self.zone).date()
        return datetime.combine(local_day, time(0), tzinfo=self.zone).astimezone(UTC)

    def next_available(self, at: datetime) -> datetime | None:
        """The first instant at or after `at` when the rep is on shift and not away
        (within LOOK_AHEAD), or None."""
        moment = at
        horizon = at + LOOK_AHEAD
        while moment <= horizon:
            if self.absent(moment) is None:
                if self.off_shift(moment) is None:
                    return moment
                start = self.hours.next_start(moment) if self.hours else None
                if start is None:
                    return None
                moment = start
                continue
            back = self._end_of_absence(moment)
            if back is None:
                return None
            moment = back
        return None

    def _end_of_absence(self, at: datetime) -> datetime | None:
        """When every absence that holds at `at` is over (the loop in next_available
        checks again, as another may begin then); None: not within sight."""
        if not self.available:
            return None
        ends = []
        if at.astimezone(self.zone).date() in self.days_off:
            ends.append(self.day_start(at) + timedelta(days=1))
        for away in self.away:
            start, end = away.span(self.zone)
            if start <= at and (end is None or at < end):
                if end is None:
                    return None
                ends.append(end)
        return max(ends) if ends else None


# --- the operator's override file --------------------------------------------------


class OverrideEntry(Away):
    rep: str


class OverrideFile(_Strict):
    away: list[OverrideEntry] = Field(default_factory=list)


class AvailabilityOverrides:
    """Time away an operator adds without a redeploy: a TOML file of `[[away]]`
    entries (rep, start, end, reason), read again whenever its modification time or
    size changes. No file: no overrides. `known` reps: an entry naming anyone else is
    an error naming the entry, so a typo does not silently leave someone on rota."""

    def __init__(self, path: Path | str | None, known: Iterable[str] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.known = frozenset(known)
        self._stamp: tuple[int, int] | None = None
        self._away: dict[str, tuple[Away, ...]] = {}
        self.warning: str | None = None
        self.current()  # a broken file at start-up is an error, not a warning

    def current(self) -> Mapping[str, tuple[Away, ...]]:
        """{rep: time away} as the file says now; the last good version when the file
        was broken by an edit (with `warning` saying why)."""
        if self.path is None:
            return self._away
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._away, self.warning = None, {}, None
            return self._away
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return self._away
        try:
            self._away = self._read()
            self.warning = None
        except AvailabilityError as exc:
            if self._stamp is None and not self._away:
                self._stamp = stamp
                raise
            self.warning = f"{exc} (keeping the previous version)"
            get_logger().warning("availability overrides not applied", reason=self.warning)
        self._stamp = stamp
        return self._away

    def _read(self) -> dict[str, tuple[Away, ...]]:
        assert self.path is not None
        where = f"availability overrides {self.path}"
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            parsed = OverrideFile.model_validate(data)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AvailabilityError(f"{where}: cannot be read: {exc}") from None
        except ValidationError as exc:
            lines = describe_errors(exc.errors())
            raise AvailabilityError(f"{where}: " + "; ".join(lines)) from None
        found: dict[str, list[Away]] = {}
        for index, entry in enumerate(parsed.away):
            if self.known and entry.rep not in self.known:
                raise AvailabilityError(
                    f"{where}: away.{index}.rep: {entry.rep!r} is not a rep in the rules "
                    "file; fix the address or remove the entry"
                )
            found.setdefault(entry.rep, []).append(
                Away(start=entry.start, end=entry.end, reason=entry.reason)
            )
        return {rep: tuple(entries) for rep, entries in found.items()}
