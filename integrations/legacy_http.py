"""`http:URL`: the current process is an HTTP endpoint that answers a POSTed lead
(`{"lead": {...raw record...}}`) with its decision as a JSON object.

Errors follow leadflow.integrations.http (timeouts, 5xx and 429 are transient, 4xx permanent);
shadow mode records them for the lead and does not retry: a decision the current
process could not give is itself a finding. The transport can be injected (tests).
"""

from __future__ import annotations

from typing import Any, Self

import httpx

from leadflow.integrations.http import make_client, send
from leadflow.integrations.legacy_common import AnsweringLegacy
from leadflow.settings import Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings


class HttpLegacy(AnsweringLegacy[None]):
    name = "http"

    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self._client = make_client(url, timeout=timeout, transport=transport)

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: None, *, shadow: ShadowSettings
    ) -> Self:
        if not target.startswith(("http://", "https://")):
            raise SettingsError(f"--legacy http:{target}: expected http:http(s)://host/path")
        return cls(target, timeout=shadow.timeout_seconds)

    async def answer(self, record: dict) -> Any:
        request = self._client.build_request("POST", self.url, json={"lead": record})
        response = await send(self._client, request, "legacy decide")
        return response.json()

    async def aclose(self) -> None:
        await self._client.aclose()
