"""A notifier that POSTs each decision as JSON to a URL (a chat webhook relay, an
internal service, an automation platform).

The request carries `Idempotency-Key`, the once-only key per lead, so a receiver that
honours it drops repeats; the token, if set, goes in `Authorization: Bearer` and is
never logged. Errors follow integrations.errors: 429 and 5xx are retried by the
pipeline (honouring Retry-After), 4xx are not.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import SettingsConfigDict

from integrations.base import Notifier
from integrations.http import make_client, send
from integrations.ratelimit import RateLimiter
from leadflow.models import Decision, Lead
from leadflow.rules import Rules
from leadflow.settings import AdapterSettings, Settings, SettingsError, load_settings


class WebhookNotifierSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_WEBHOOK_")

    url: HttpUrl | None = Field(default=None, description="where notifications are POSTed")
    token: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per-request timeout")
    requests_per_second: int | None = Field(
        default=None, ge=1, description="client-side limit: requests started per second"
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, description="client-side limit: requests in flight"
    )


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.url = url
        self.limiter = limiter or RateLimiter.unlimited()
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._client = make_client(url, timeout=timeout, headers=headers)

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.url}"

    @classmethod
    def from_settings(cls, settings: Settings, rules: Rules) -> Self:
        own = load_settings(WebhookNotifierSettings)
        if own.url is None:
            raise SettingsError("LEADFLOW_WEBHOOK_URL: required by the webhook notifier, not set")
        limiter = RateLimiter(own.requests_per_second, 1.0, own.max_concurrent)
        return cls(str(own.url), token=own.token, timeout=own.timeout_seconds, limiter=limiter)

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        body = {
            "lead": lead.model_dump(mode="json"),
            "decision": decision.model_dump(mode="json"),
        }
        # The configured URL exactly: a relative "" would be joined to httpx's base_url,
        # which httpx always ends with "/", so ".../hook" would be POSTed as ".../hook/".
        request = self._client.build_request(
            "POST", self.url, json=body, headers={"Idempotency-Key": idempotency_key}
        )
        async with self.limiter:
            await send(self._client, request, "webhook notify")

    async def aclose(self) -> None:
        await self._client.aclose()
