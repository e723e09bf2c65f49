"""Due dates as a rep reads them: the day, and how far away.

"due 14:18 UTC" reads like today even when it is tomorrow, and says nothing when the
time has passed. `due_text` gives "due today 14:18 UTC (in 35 min)", "due tomorrow
09:00 UTC", "due Thu 26 Nov 09:00 UTC", or "overdue by 2 h (due today 08:15 UTC)".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def due_text(due_at: datetime, now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    due_at = due_at.astimezone(UTC)
    when = f"{_day(due_at, now)} {due_at:%H:%M} UTC"
    if due_at <= now:
        return f"overdue by {span(now - due_at)} (due {when})"
    soon = due_at - now
    return f"due {when}" + (f" (in {span(soon)})" if soon < timedelta(hours=12) else "")


def span(delta: timedelta) -> str:
    """A duration in its largest sensible units: `35 min`, `2 h`, `2 h 5 min`, `3 d 4 h`."""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{max(minutes, 1)} min"


def _day(moment: datetime, now: datetime) -> str:
    days = (moment.date() - now.date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    return f"{moment:%a %d %b}" + (f" {moment:%Y}" if moment.year != now.year else "")
