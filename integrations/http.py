"""HTTP plumbing shared by adapters that talk to vendors: one client factory and one
place that turns httpx outcomes into the `integrations.errors` tree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from leadflow.integrations.errors import (
    AdapterError,
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.redact import redact_url

USER_AGENT = "leadflow/0.1 (+https://github.com/leadflow)"

_SECRET_URLS: set[str] = set()


def _bare(url: str | httpx.URL) -> str:
    return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))


def hide_in_logs(url: str) -> None:
    """Keep a URL that is itself a credential (a chat or automation webhook) out of
    httpx's log: its path is shown redacted."""
    _SECRET_URLS.add(_bare(url))


class _HideSecretUrls(logging.Filter):
    """httpx logs every request's full URL at INFO (`HTTP Request: POST https://...`).
    The URL is shown through `redact_url`: never its query (a signature or a token
    can ride there) nor its user info, and not its path when it is a credential
    (registered with `hide_in_logs`), whoever configures logging and at whatever
    level."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], httpx.URL):
            url: httpx.URL = args[1]
            shown = redact_url(url, keep_path=_bare(url) not in _SECRET_URLS)
            record.args = (args[0], shown, *args[2:])
        return True


logging.getLogger("httpx").addFilter(_HideSecretUrls())


def make_client(
    base_url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient with our timeouts and user agent. Connection retries are left
    to the pipeline's task retries, which back off and are visible in Prefect."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        transport=transport,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_response(
    response: httpx.Response, operation: str, *, show_path: bool = True
) -> AdapterError | None:
    """The adapter error a response stands for, or None when it succeeded.
    `show_path=False` for URLs whose path is the credential (chat webhooks)."""
    status = response.status_code
    if status < 300:
        return None
    # Redirects are not followed: a moved endpoint must fail loudly, not count as sent.
    path = redact_url(response.request.url, keep_path=show_path, keep_host=False)
    where = f"{operation}: HTTP {status} from {response.request.method} {path}"
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        return RateLimited(where, parse_retry_after(response.headers.get("retry-after")))
    if status >= 500 or status == 408:
        return TransientError(where)
    if status in (401, 403):
        return AuthenticationError(where)
    return PermanentError(where)


def raise_for_response(response: httpx.Response, operation: str, *, show_path: bool = True) -> None:
    error = error_for_response(response, operation, show_path=show_path)
    if error is not None:
        raise error


def error_for_exception(exc: httpx.HTTPError, operation: str) -> AdapterError:
    """Timeouts and connection failures are transient; other client errors are not."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return TransientError(f"{operation}: {kind}")
    return PermanentError(f"{operation}: {kind}")


async def send_within_deadline(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`client.send`, with the client's timeout as a deadline on the whole call.

    httpx's timeouts bound each network operation, not the call: a vendor that drips
    its answer a byte at a time, each byte inside the read timeout, would hold a task
    (and the lead) for as long as it likes. Past the deadline the call ends as a
    read timeout, which is transient."""
    deadline = client.timeout.read
    if deadline is None:
        return await client.send(request)
    try:
        async with asyncio.timeout(deadline):
            return await client.send(request)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(
            f"no complete answer within {deadline:g} s", request=request
        ) from exc


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    operation: str,
    *,
    secret_url: bool = False,
) -> httpx.Response:
    """Send a request and raise the matching adapter error on failure; with
    `secret_url` (a webhook whose URL is the credential) its path is in no message
    nor log line."""
    if secret_url:
        hide_in_logs(str(request.url))
    try:
        response = await send_within_deadline(client, request)
    except httpx.HTTPError as exc:
        raise error_for_exception(exc, operation) from exc
    raise_for_response(response, operation, show_path=not secret_url)
    return response
