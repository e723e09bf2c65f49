"""What chat notifiers (Slack, Teams) share: one message per lead from `notify`, one
digest per rep from `notify_many`, and a guard against sending a key twice.

Chat webhooks accept no idempotency key, so the adapter remembers the keys it has
delivered for its life: a task retried in the same process after a send that
succeeded (its result lost) does not post again. Across processes Prefect's cached
branch result is what prevents the repeat (see "Once only" in the README).

Digests exist because a chat webhook allows about one message a second: a backlog
of 500 leads for 6 reps is 6 messages, not 500 (hot leads first in each). A digest
that would exceed the vendor's size limits (`digest_fits`: Teams' 28 KB, Slack's 50
blocks) is split into as many messages as it takes; no lead is left out.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import httpx
from pydantic import Field, HttpUrl, SecretStr

from leadflow.integrations.base import Notifier, S, SlaNotice
from leadflow.integrations.credentials import Credential
from leadflow.integrations.messages import LeadSummary, group_by_rep
from leadflow.integrations.vendor import VendorHttp, VendorSettings
from leadflow.models import Decision, Lead
from leadflow.settings import Settings, SettingsError


class ChatNotifier(Notifier[S]):
    """Subclasses render and post; this class decides what is sent and when."""

    def __init__(self) -> None:
        self._sent: set[str] = set()

    @abstractmethod
    async def post_one(self, summary: LeadSummary, key: str) -> None:
        """Post the message for one lead."""

    @abstractmethod
    async def post_digest(self, rep: str, summaries: list[LeadSummary], key: str) -> None:
        """Post one message listing several leads for `rep`, hot first."""

    @abstractmethod
    async def post_notice(self, notice: SlaNotice) -> None:
        """Post one SLA step (a reminder, a reassignment, a manager's escalation) to
        the channel, naming whom it is for."""

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        if idempotency_key in self._sent:
            return
        await self.post_notice(notice)
        self._sent.add(idempotency_key)

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        if idempotency_key in self._sent:
            return
        await self.post_one(LeadSummary.of(lead, decision), idempotency_key)
        self._sent.add(idempotency_key)

    def digest_fits(self, rep: str, summaries: list[LeadSummary]) -> bool:
        """Whether one digest message may list `summaries` (the vendor's size limits);
        notify_many splits a digest until each part fits. No limit by default."""
        return True

    def digest_parts(
        self, rep: str, entries: list[tuple[LeadSummary, str]]
    ) -> list[list[tuple[LeadSummary, str]]]:
        """`entries` (hot first) in consecutive parts that each fit one message."""
        parts: list[list[tuple[LeadSummary, str]]] = [[]]
        for entry in entries:
            part = parts[-1]
            if part and not self.digest_fits(rep, [s for s, _ in [*part, entry]]):
                parts.append(part := [])
            part.append(entry)
        return [part for part in parts if part]

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        fresh = [item for item in items if item[2] not in self._sent]
        for rep, entries in group_by_rep(fresh).items():
            unique = list({key: (s, key) for s, key in entries}.values())
            for part in self.digest_parts(rep, unique):
                keys = [key for _, key in part]
                if len(part) == 1:
                    await self.post_one(part[0][0], keys[0])
                else:
                    summaries = [s for s, _ in part]
                    await self.post_digest(rep, summaries, "digest:" + ",".join(sorted(keys)))
                self._sent.update(keys)


class HookSettings(VendorSettings):
    """A chat webhook whose URL is the credential."""

    url: SecretStr | None = Field(default=None, description="the webhook URL (the credential)")
    url_block: str | None = Field(default=None, description="or: a Prefect Secret block name")


class HookChatNotifier(ChatNotifier[HookSettings]):
    """A chat notifier that POSTs JSON to a secret webhook URL. Subclasses set
    `settings_class`, `env_prefix` and render payloads in `payload_one`/`payload_digest`."""

    env_prefix: ClassVar[str]

    def __init__(self, own: HookSettings, *, transport: httpx.AsyncBaseTransport | None = None):
        super().__init__()
        if own.url is not None:
            try:
                HttpUrl(own.url.get_secret_value())
            except ValueError:
                raise SettingsError(f"{self.env_prefix}URL: not an http(s) URL") from None
        self.hook = Credential(f"{self.env_prefix}URL", own.url, own.url_block).require(self.name)
        # The URL is the secret: it goes into no error message (`secret_url`).
        self.http = VendorHttp.from_settings(self.name, own, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, own: HookSettings) -> Self:
        return cls(own)

    def check_reply(self, response: httpx.Response) -> None:
        """Override to read vendor error details from a response."""

    @abstractmethod
    def payload_one(self, summary: LeadSummary) -> dict[str, Any]: ...

    @abstractmethod
    def payload_digest(self, rep: str, summaries: list[LeadSummary]) -> dict[str, Any]: ...

    @abstractmethod
    def payload_notice(self, notice: SlaNotice) -> dict[str, Any]: ...

    async def _post(self, payload: dict[str, Any]) -> None:
        url = (await self.hook.get()).get_secret_value()
        await self.http.request(
            "POST", url, "post", json=payload, secret_url=True, check=self.check_reply
        )

    async def post_one(self, summary: LeadSummary, key: str) -> None:
        await self._post(self.payload_one(summary))

    async def post_digest(self, rep: str, summaries: list[LeadSummary], key: str) -> None:
        await self._post(self.payload_digest(rep, summaries))

    async def post_notice(self, notice: SlaNotice) -> None:
        await self._post(self.payload_notice(notice))

    async def probe(self) -> str:
        await self.hook.get()
        return "webhook URL set (a webhook has no read call: nothing sent)"

    async def aclose(self) -> None:
        await self.http.aclose()
