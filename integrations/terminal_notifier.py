"""The default notifier: a line on the terminal and a JSON line in an outbox file.

The outbox is the record of what was sent: each line carries the once-only key, and
a key already in the file is not sent again, even from another process (the file is
locked while it is checked and appended to).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from integrations.base import Notifier
from leadflow.models import Decision, Lead
from leadflow.rules import Rules
from leadflow.settings import AdapterSettings, Settings, load_settings
from leadflow.when import due_text


class TerminalNotifierSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_TERMINAL_")

    outbox_path: Path = Field(
        default=Path(".leadflow/outbox.jsonl"), description="file every notification is appended to"
    )
    echo: bool = Field(default=True, description="also print each notification on the terminal")


class TerminalNotifier(Notifier):
    name = "terminal"

    def __init__(self, outbox_path: Path, *, echo: bool = True) -> None:
        self.outbox_path = Path(outbox_path)
        self.echo = echo
        self._sent: set[str] = set()
        self._read_up_to = 0
        self._lock = asyncio.Lock()

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.outbox_path.resolve()}"

    @classmethod
    def from_settings(cls, settings: Settings, rules: Rules) -> Self:
        own = load_settings(TerminalNotifierSettings)
        return cls(own.outbox_path, echo=own.echo)

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        message = {
            "key": idempotency_key,
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
        async with self._lock:
            sent = await asyncio.to_thread(self._append_once, message)
        if sent and self.echo:
            due = f", {due_text(decision.due_at)}" if decision.due_at else ""
            print(
                f"  -> {decision.rep}: {decision.tier} lead {lead.email} "
                f"({lead.company or lead.domain}), score {decision.score}, "
                f"{decision.follow_up.value}{due}",
                file=sys.stderr,
            )

    def _append_once(self, message: dict) -> bool:
        self.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        with self.outbox_path.open("a+", encoding="utf-8") as outbox:
            fcntl.flock(outbox, fcntl.LOCK_EX)
            try:
                outbox.seek(self._read_up_to)
                for line in outbox:
                    if line.strip():
                        self._sent.add(json.loads(line)["key"])
                if message["key"] in self._sent:
                    self._read_up_to = outbox.tell()
                    return False
                outbox.write(json.dumps(message) + "\n")
                outbox.flush()
                self._read_up_to = outbox.tell()
                self._sent.add(message["key"])
                return True
            finally:
                fcntl.flock(outbox, fcntl.LOCK_UN)
