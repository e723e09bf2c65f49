# leadflow-acme/src/leadflow_acme/__init__.py
"""Tell the assigned rep about each lead through Acme Messages (a made-up vendor).

Acme keeps one message per `Idempotency-Key`, so a retried task or a rerun sends
nothing twice; leadflow hands each lead's key to `notify`.
"""

from __future__ import annotations

from typing import Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow import AdapterSettings, Decision, Lead, Notifier, Settings
from leadflow.integrations.http import make_client, send


class AcmeSettings(AdapterSettings):
    """LEADFLOW_ACME_TOKEN (required), LEADFLOW_ACME_BASE_URL, LEADFLOW_ACME_TIMEOUT_SECONDS."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ACME_")

    token: SecretStr = Field(description="Acme API token")
    base_url: str = Field(default="https://api.acme.example", description="Acme API root")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per request")


class AcmeNotifier(Notifier[AcmeSettings]):
    name = "acme"  # with Notifier's kind: the entry point "notifier.acme"
    settings_class = AcmeSettings  # the type parameter, as a class: leadflow loads it

    def __init__(
        self, own: AcmeSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = own.base_url
        token = own.token.get_secret_value()
        self._client = make_client(
            own.base_url,
            timeout=own.timeout_seconds,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,  # tests pass an httpx.MockTransport
        )

    @classmethod
    def from_settings(cls, settings: Settings, own: AcmeSettings) -> Self:
        # `own` is settings_class, loaded from LEADFLOW_ACME_* by leadflow.
        # No I/O here: the client connects on the first message.
        return cls(own)

    @property
    def once_scope(self) -> str:
        # Where the side effect lands: another Acme account is another place.
        return f"{self.kind}.{self.name}:{self.base_url}"

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        request = self._client.build_request(
            "POST",
            "/v1/messages",
            json={"to": decision.rep, "text": f"New {decision.tier} lead: {lead.email}"},
            headers={"Idempotency-Key": idempotency_key},
        )
        # send() turns timeouts, 429 and 5xx into TransientError, 4xx into PermanentError
        await send(self._client, request, "acme message")

    async def aclose(self) -> None:
        await self._client.aclose()
