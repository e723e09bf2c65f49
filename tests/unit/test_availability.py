"""A rep's calendar on a fixed clock: working hours in their own time zone (daylight
saving included), night shifts, days off, time away, when they are back, and the
operator's override file read again when it changes."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from leadflow.availability import (
    AvailabilityError,
    AvailabilityOverrides,
    Away,
    Calendar,
    WorkingHours,
)

BERLIN = WorkingHours(timezone="Europe/Berlin", start=time(9), end=time(17))
NEW_YORK = WorkingHours(timezone="America/New_York", start=time(9), end=time(17))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "at", "on"),
    [
        # Berlin is UTC+1 in winter: 09:00 local is 08:00 UTC
        pytest.param(BERLIN, "2026-01-12 07:59", False, id="berlin-winter-before-nine"),
        pytest.param(BERLIN, "2026-01-12 08:00", True, id="berlin-winter-nine"),
        pytest.param(BERLIN, "2026-01-12 15:59", True, id="berlin-winter-last-minute"),
        pytest.param(BERLIN, "2026-01-12 16:00", False, id="berlin-winter-five-is-end"),
        # ... and UTC+2 in summer: 09:00 local is 07:00 UTC
        pytest.param(BERLIN, "2026-07-13 07:00", True, id="berlin-summer-nine"),
        pytest.param(BERLIN, "2026-07-13 15:30", False, id="berlin-summer-after-five"),
        pytest.param(BERLIN, "2026-01-17 10:00", False, id="saturday"),
        # New York on the Monday: 09:00 EST is 14:00 UTC
        pytest.param(NEW_YORK, "2026-01-12 13:59", False, id="new-york-before-nine"),
        pytest.param(NEW_YORK, "2026-01-12 14:00", True, id="new-york-nine"),
        # Monday 01:00 UTC is still Sunday evening in New York
        pytest.param(NEW_YORK, "2026-01-12 01:00", False, id="new-york-sunday-evening"),
    ],
)
def test_on_shift_in_the_reps_own_time_zone(hours: WorkingHours, at: str, on: bool) -> None:
    assert (Calendar(rep="r", hours=hours).off_shift(utc(at)) is None) is on


def test_daylight_saving_moves_the_shift_with_the_wall_clock() -> None:
    """Europe/Berlin springs forward on Sunday 2026-03-29 and falls back on Sunday
    2026-10-25; a rep who works every day 09:00-17:00 starts at 08:00 UTC the day
    before the change and at 07:00 UTC the day after, and the other way in autumn."""
    daily = WorkingHours(
        timezone="Europe/Berlin", days=["sat", "sun", "mon"], start=time(9), end=time(17)
    )
    calendar = Calendar(rep="r", hours=daily)
    assert calendar.off_shift(utc("2026-03-28 07:30")) is not None  # 08:30 CET
    assert calendar.off_shift(utc("2026-03-29 07:30")) is None  # 09:30 CEST
    assert calendar.off_shift(utc("2026-03-29 15:30")) is not None  # 17:30 CEST
    assert daily.next_start(utc("2026-03-28 17:00")) == utc("2026-03-29 07:00")
    assert daily.next_start(utc("2026-10-24 17:00")) == utc("2026-10-25 08:00")
    assert calendar.off_shift(utc("2026-10-25 07:30")) is not None  # 08:30 CET
    assert calendar.off_shift(utc("2026-10-25 08:00")) is None  # 09:00 CET
    reason = calendar.off_shift(utc("2026-03-29 06:30"))
    assert reason == ("off shift (Sun 08:30 CEST; works sat,sun,mon 09:00-17:00 Europe/Berlin)")


def test_a_night_shift_runs_past_midnight() -> None:
    night = WorkingHours(timezone="UTC", days=["mon"], start=time(22), end=time(6))
    calendar = Calendar(rep="r", hours=night)
    assert calendar.off_shift(utc("2026-01-12 21:59")) is not None
    assert calendar.off_shift(utc("2026-01-12 23:00")) is None
    assert calendar.off_shift(utc("2026-01-13 05:59")) is None  # Tuesday, Monday's shift
    assert calendar.off_shift(utc("2026-01-13 06:00")) is not None
    assert calendar.off_shift(utc("2026-01-13 23:00")) is not None  # no Tuesday shift


def test_days_off_and_time_away_are_days_in_the_reps_time_zone() -> None:
    calendar = Calendar(
        rep="r",
        hours=NEW_YORK,
        days_off=frozenset({date(2026, 1, 13)}),
        away=(Away(start=date(2026, 1, 19), end=date(2026, 1, 20), reason="conference"),),
    )
    # Tuesday 13 January in New York runs from 05:00 UTC to 05:00 UTC the next day
    assert calendar.absent(utc("2026-01-13 04:59")) is None
    assert calendar.absent(utc("2026-01-13 05:00")) == "day off 2026-01-13"
    assert calendar.absent(utc("2026-01-14 04:59")) == "day off 2026-01-13"
    assert calendar.absent(utc("2026-01-14 05:00")) is None
    # away 19-20 January, both days included
    assert calendar.absent(utc("2026-01-19 05:00")) == (
        "away until 2026-01-21 00:00 EST (conference)"
    )
    assert calendar.absent(utc("2026-01-21 04:59")) is not None
    assert calendar.absent(utc("2026-01-21 05:00")) is None


def test_time_away_to_the_minute_and_open_ended() -> None:
    calendar = Calendar(
        rep="r",
        away=(
            Away(start=utc("2026-01-12 12:00"), end=utc("2026-01-12 14:30"), reason="dentist"),
            Away(start=date(2026, 2, 1)),
        ),
    )
    assert calendar.absent(utc("2026-01-12 11:59")) is None
    assert "dentist" in (calendar.absent(utc("2026-01-12 12:00")) or "")
    assert calendar.absent(utc("2026-01-12 14:30")) is None
    assert calendar.absent(utc("2027-06-01 10:00")) == "away until further notice"
    assert Calendar(rep="r", available=False).absent(utc("2026-01-12 10:00")) == (
        "marked unavailable in the rules"
    )


def test_away_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationError, match="before start"):
        Away(start=date(2026, 1, 20), end=date(2026, 1, 19))


def test_unknown_time_zone_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        WorkingHours(timezone="Mars/Olympus", start=time(9), end=time(17))


def test_next_available_skips_nights_weekends_days_off_and_time_away() -> None:
    calendar = Calendar(
        rep="r",
        hours=BERLIN,
        days_off=frozenset({date(2026, 1, 19)}),
        away=(Away(start=date(2026, 1, 20), end=date(2026, 1, 21), reason="leave"),),
    )
    at = utc("2026-01-12 10:00")  # Monday, on shift
    assert calendar.next_available(at) == at
    # Friday evening: not Monday 19th (a day off), nor 20-21 (away): Thursday 09:00 Berlin
    assert calendar.next_available(utc("2026-01-16 18:00")) == utc("2026-01-22 08:00")
    assert calendar.next_available(utc("2026-01-13 17:00")) == utc("2026-01-14 08:00")
    assert Calendar(rep="r", available=False).next_available(at) is None
    assert Calendar(rep="r", away=(Away(start=date(2026, 1, 1)),)).next_available(at) is None


# --- the override file ------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    # a second edit within the file system's timestamp resolution still counts
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_override_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "availability.toml"
    overrides = AvailabilityOverrides(path, known=["bob@example.com"])
    assert overrides.current() == {}  # no file: no overrides
    write(
        path,
        '[[away]]\nrep = "bob@example.com"\nstart = 2026-01-12\nend = 2026-01-13\n'
        'reason = "sick"\n',
    )
    away = overrides.current()["bob@example.com"]
    assert away == (Away(start=date(2026, 1, 12), end=date(2026, 1, 13), reason="sick"),)
    write(path, "")
    assert overrides.current() == {}
    path.unlink()
    assert overrides.current() == {}


def test_a_broken_edit_keeps_the_last_good_version_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "availability.toml"
    write(path, '[[away]]\nrep = "bob@example.com"\nstart = 2026-01-12\n')
    overrides = AvailabilityOverrides(path, known=["bob@example.com"])
    good = overrides.current()
    write(path, '[[away]]\nrep = "bbo@example.com"\nstart = 2026-01-12\n')
    assert overrides.current() == good
    assert overrides.warning == (
        f"availability overrides {path}: away.0.rep: 'bbo@example.com' is not a rep in the "
        "rules file; fix the address or remove the entry (keeping the previous version)"
    )
    write(path, '[[away]]\nrep = "bob@example.com"\nstart = "soon"\n')
    assert overrides.current() == good
    assert "away.0.start" in (overrides.warning or "")


def test_a_broken_file_at_start_up_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "availability.toml"
    write(path, '[[away]]\nrep = "bob@example.com"\nstart = 2026-01-12\nuntil = 2026-01-13\n')
    with pytest.raises(AvailabilityError, match=r"away\.0\.until"):
        AvailabilityOverrides(path, known=["bob@example.com"])
