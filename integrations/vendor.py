"""What every vendor adapter shares: its settings base and its one HTTP connection.

`VendorSettings` gives each adapter a `base_url` (point it at a sandbox or a local
server), a timeout, a client-side rate limit (each vendor sets its published limit as
the default) and the name of an optional Prefect Secret block for its credential.

`VendorHttp` is one adapter's connection: one shared `httpx.AsyncClient`, its
`RateLimiter`, and its credential. Every request goes through `request()`, which
waits for the limiter, adds the credential, and lets leadflow.integrations.http decide what a
failure means; a Retry-After also pauses the limiter, so the adapter's other
requests wait it out instead of earning 429s of their own. Tests pass a `transport`
(an `httpx.MockTransport`, respx's, or none for a real loopback server): nothing is
patched globally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field

from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import PermanentError, RateLimited
from leadflow.integrations.http import (
    error_for_exception,
    hide_in_logs,
    make_client,
    raise_for_response,
    send_within_deadline,
)
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.settings import AdapterSettings

AuthHeaders = Callable[[str], Mapping[str, str]]
"""Credential value -> request headers, e.g. `lambda token: {"Authorization": ...}`."""


def bearer(token: str) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {token}"}


class VendorSettings(AdapterSettings):
    """Fields every vendor adapter has. Subclasses set `env_prefix` and the defaults."""

    base_url: str = Field(default="", description="API root; point it at a sandbox to test")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per-request timeout")
    rate_limit_requests: int = Field(default=10, ge=1, description="requests per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")
    max_concurrent: int = Field(default=10, ge=1, description="requests in flight at once")


class VendorHttp:
    """One adapter's HTTP connection to its vendor."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        credential: Credential | None = None,
        auth: AuthHeaders = bearer,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or RateLimiter(10, 1.0, max_concurrent=10)
        self.credential = credential
        self._auth = auth
        self.client = make_client(
            self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    @classmethod
    def from_settings(
        cls,
        name: str,
        own: VendorSettings,
        *,
        credential: Credential | None = None,
        auth: AuthHeaders = bearer,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> VendorHttp:
        return cls(
            name,
            own.base_url,
            timeout=own.timeout_seconds,
            limiter=RateLimiter(
                own.rate_limit_requests, own.rate_limit_seconds, max_concurrent=own.max_concurrent
            ),
            credential=credential,
            auth=auth,
            headers=headers,
            transport=transport,
        )

    async def auth_headers(self) -> Mapping[str, str]:
        if self.credential is None:
            return {}
        return self._auth((await self.credential.get()).get_secret_value())

    async def request(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        check: Callable[[httpx.Response], Awaitable[None] | None] | None = None,
        allow: tuple[int, ...] = (),
        secret_url: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request within the rate limit; raise the adapter error on failure.

        `url` is joined to `base_url` unless absolute. `check`, if given, inspects a
        response before the status is judged, for vendors that put errors in the body
        (Slack's `ok: false`, Salesforce's error array). Statuses in `allow` are
        returned, not raised (a 404 on a read means "not there"). `secret_url` keeps the
        path out of error messages, for webhooks whose URL is the credential."""
        headers = {**(await self.auth_headers()), **kwargs.pop("headers", {})}
        target = url if url.startswith(("http://", "https://")) else self.base_url + url
        if secret_url:
            hide_in_logs(target)
        request = self.client.build_request(method, target, headers=headers, **kwargs)
        async with self.limiter.slot():
            try:
                response = await send_within_deadline(self.client, request)
            except httpx.HTTPError as exc:
                raise error_for_exception(exc, f"{self.name} {operation}") from exc
        if response.status_code in allow:
            return response
        try:
            if check is not None:
                result = check(response)
                if result is not None:
                    await result
            raise_for_response(response, f"{self.name} {operation}", show_path=not secret_url)
        except RateLimited as exc:
            self.limiter.pause(exc.retry_after if exc.retry_after is not None else 1.0)
            raise
        return response

    async def json(self, method: str, url: str, operation: str, **kwargs: Any) -> Any:
        """`request()` and the decoded JSON body (a PermanentError if it is not JSON)."""
        response = await self.request(method, url, operation, **kwargs)
        if response.status_code in (204, *kwargs.get("allow", ())) or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentError(
                f"{self.name} {operation}: HTTP {response.status_code} with a body that is not JSON"
            ) from exc

    async def aclose(self) -> None:
        await self.client.aclose()


def path_segment(value: object) -> str:
    """A value (an id a vendor answered, a setting) as one URL path segment,
    percent-encoded: an id holding `/`, `?` or `..` cannot change the request's path."""
    return quote(str(value), safe="")


def unique_batches(items: Sequence[tuple[str, Any]], size: int) -> list[list[tuple[str, Any]]]:
    """Split (key, item) pairs into batches of at most `size` with no key twice in a
    batch; a repeated key keeps its last item (the latest decision wins)."""
    latest: dict[str, Any] = {}
    for key, item in items:
        latest.pop(key, None)  # move to the end: order follows the last occurrence
        latest[key] = item
    pairs = list(latest.items())
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]
