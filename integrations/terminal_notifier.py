"""The default notifier: a line on the terminal and a JSON line in an outbox file.

The outbox is the record of what was sent: each line carries the once-only key, and
a key already in the file is not sent again, even from another process (the file is
locked while it is checked and appended to).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import Notifier, RunAlert, SlaNotice
from leadflow.integrations.jsonl_ledger import JsonlLedger
from leadflow.models import Decision, Lead
from leadflow.settings import AdapterSettings, Settings
from leadflow.when import due_text


class TerminalNotifierSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_TERMINAL_")

    outbox_path: Path = Field(
        default=Path(".leadflow/outbox.jsonl"), description="file every notification is appended to"
    )
    echo: bool = Field(default=True, description="also print each notification on the terminal")


class TerminalNotifier(Notifier[TerminalNotifierSettings]):
    name = "terminal"
    settings_class = TerminalNotifierSettings

    def __init__(self, outbox_path: Path, *, echo: bool = True) -> None:
        self.outbox_path = Path(outbox_path)
        self.echo = echo
        self._ledger = JsonlLedger(self.outbox_path, "key")
        self._lock = asyncio.Lock()

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.outbox_path.resolve()}"

    @classmethod
    def from_settings(cls, settings: Settings, own: TerminalNotifierSettings) -> Self:
        return cls(own.outbox_path, echo=own.echo)

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        await self.notify_many([(lead, decision, idempotency_key)])

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        """One locked append to the outbox for the batch. On the terminal a single
        notification is one line; a batch is a digest per rep, hot leads first."""
        messages = [_message(lead, decision, key) for lead, decision, key in items]
        async with self._lock:
            sent = await asyncio.to_thread(self._ledger.append_new, messages)
        if not self.echo or not any(sent):
            return
        fresh = [item for item, ok in zip(items, sent, strict=True) if ok]
        if len(fresh) == 1:
            lead, decision, _key = fresh[0]
            due = f", {due_text(decision.due_at)}" if decision.due_at else ""
            print(
                f"  -> {decision.rep}: {decision.tier} lead {lead.email} "
                f"({lead.company or lead.domain}), score {decision.score}, "
                f"{decision.follow_up.value}{due}",
                file=sys.stderr,
            )
            return
        for rep, leads in _digests(fresh).items():
            tiers = Counter(decision.tier for _lead, decision, _key in leads)
            first = max(leads, key=lambda item: item[1].score)
            print(
                f"  -> {rep}: {len(leads)} leads ("
                + ", ".join(f"{count} {tier}" for tier, count in tiers.most_common())
                + f"), top {first[0].email} score {first[1].score}",
                file=sys.stderr,
            )

    @property
    def alerts_path(self) -> Path:
        """Failed-run alerts go beside the outbox, not in it: the outbox holds one line
        per lead notified."""
        return self.outbox_path.with_name("alerts.jsonl")

    @property
    def sla_path(self) -> Path:
        """SLA reminders and escalations go beside the outbox too (`sla.jsonl`)."""
        return self.outbox_path.with_name("sla.jsonl")

    async def alert(self, alert: RunAlert, *, idempotency_key: str) -> None:
        await self._beside(
            self.alerts_path, alert.model_dump(), idempotency_key, f"!! {alert.text}"
        )

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        body = notice.model_dump(mode="json")
        await self._beside(self.sla_path, body, idempotency_key, f"-> {notice.to}: {notice.text}")

    async def _beside(self, path: Path, body: dict, key: str, line: str) -> None:
        """Append one message to a file beside the outbox unless its key is there
        already, and print `line` when it was new."""
        message = {"key": key, "sent_at": datetime.now(UTC).isoformat()} | body
        (sent,) = await asyncio.to_thread(JsonlLedger(path, "key").append_new, [message])
        if sent and self.echo:
            print(f"  {line}", file=sys.stderr)


def _message(lead: Lead, decision: Decision, key: str) -> dict:
    return {
        "key": key,
        "sent_at": datetime.now(UTC).isoformat(),
        "to": decision.rep,
        "lead_id": lead.id,
        "email": lead.email,
        "company": lead.company,
        "tier": decision.tier,
        "score": decision.score,
        "follow_up": decision.follow_up.value,
        "due_at": decision.due_at.isoformat() if decision.due_at else None,
    }


def _digests(items):
    """Items grouped by rep; reps with hot leads (highest score) first."""
    by_rep: dict[str, list] = defaultdict(list)
    for item in items:
        by_rep[item[1].rep].append(item)
    return dict(sorted(by_rep.items(), key=lambda kv: -max(d.score for _l, d, _k in kv[1])))
