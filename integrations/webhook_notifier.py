"""A notifier that POSTs each decision as JSON to a URL (a chat webhook relay, an
internal service, an automation platform).

The URL is treated as a credential (a Zapier, Make or n8n hook is its path): it
appears in no error message nor log line (leadflow.integrations.redact). The
request carries `Idempotency-Key`, the once-only key per lead (an SLA step's message,
`sla_notice`, has a body and a key of its own), so a receiver that honours it drops
repeats; the token, if set, goes in `Authorization: Bearer` and is never logged. Errors
follow leadflow.integrations.errors: 429 and 5xx are retried by the pipeline (honouring
Retry-After), 4xx are not.

With `LEADFLOW_WEBHOOK_SIGNING_SECRET` set, each request is signed so the receiver
can check it came from leadflow and was not replayed: `X-Leadflow-Timestamp` (Unix
seconds) and `X-Leadflow-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." +
raw body)>`, over the exact bytes sent (`verify_signature` is the receiver's side).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Self

import httpx
from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import Notifier, SlaNotice
from leadflow.integrations.http import make_client, send
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.models import Decision, Lead
from leadflow.settings import AdapterSettings, Settings, SettingsError


class WebhookNotifierSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_WEBHOOK_")

    url: HttpUrl | None = Field(default=None, description="where notifications are POSTed")
    token: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per-request timeout")
    signing_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for X-Leadflow-Signature"
    )
    requests_per_second: int | None = Field(
        default=None, ge=1, description="client-side limit: requests started per second"
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, description="client-side limit: requests in flight"
    )


SIGNATURE_HEADER = "X-Leadflow-Signature"
TIMESTAMP_HEADER = "X-Leadflow-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def signed_headers(secret: SecretStr | None, body: bytes) -> dict[str, str]:
    if secret is None:
        return {}
    timestamp = str(int(time.time()))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret.get_secret_value(), timestamp, body),
    }


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300
) -> bool:
    """The receiver's check: the signature matches and the timestamp is recent."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _limiter(own: WebhookNotifierSettings) -> RateLimiter | None:
    """The optional client-side limit, so a backlog stays inside the receiver's rate
    limit; none unless one of the two settings is set."""
    if own.requests_per_second is None and own.max_concurrent is None:
        return None
    # Without a rate, only the concurrency bounds it: an effectively unlimited window.
    requests = own.requests_per_second or 1_000_000
    return RateLimiter(requests, 1.0, max_concurrent=own.max_concurrent)


class WebhookNotifier(Notifier[WebhookNotifierSettings]):
    name = "webhook"
    settings_class = WebhookNotifierSettings

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        timeout: float = 10.0,
        signing_secret: SecretStr | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.limiter = limiter
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._client = make_client(url, timeout=timeout, headers=headers, transport=transport)

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: WebhookNotifierSettings) -> Self:
        if own.url is None:
            raise SettingsError("LEADFLOW_WEBHOOK_URL: required by the webhook notifier, not set")
        return cls(
            str(own.url),
            token=own.token,
            timeout=own.timeout_seconds,
            signing_secret=own.signing_secret,
            limiter=_limiter(own),
        )

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        body = {
            "lead": lead.model_dump(mode="json"),
            "decision": decision.model_dump(mode="json"),
        }
        await self._post(body, idempotency_key, "webhook notify")

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        """`{"sla": {kind, to, lead_id, email, ..., reason}, "text": ...}`: a receiver
        tells a notification of a lead (`lead`, `decision`) from an SLA step (`sla`)."""
        body = {"sla": notice.model_dump(mode="json"), "text": notice.text}
        await self._post(body, idempotency_key, "webhook sla notice")

    async def _post(self, body: dict, idempotency_key: str, what: str) -> None:
        # The configured URL exactly: a relative "" would be joined to httpx's base_url,
        # which httpx always ends with "/", so ".../hook" would be POSTed as ".../hook/".
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Idempotency-Key": idempotency_key,
            "Content-Type": "application/json",
            **signed_headers(self.signing_secret, raw),
        }
        request = self._client.build_request("POST", self.url, content=raw, headers=headers)
        await self._send(request, what)

    async def _send(self, request: httpx.Request, what: str) -> None:
        """Send within the client-side limit, when one is set."""
        if self.limiter is None:
            await send(self._client, request, what, secret_url=True)
            return
        async with self.limiter.slot():
            await send(self._client, request, what, secret_url=True)

    async def aclose(self) -> None:
        await self._client.aclose()
