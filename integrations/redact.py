"""One redaction for every piece of text that could carry a credential.

A URL can be a credential in three places: its user info (`user:password@`), its
query string (a `sig=`, a `token=`) and, for webhooks whose URL is the credential
(Slack, Teams, Zapier, Make, n8n), its path. `redact_url` shows what helps someone
find the problem (the scheme, the host and, for a vendor API, the path naming the
operation) and nothing else. `redact` takes known secret values (a token, an SMTP
password) out of text a vendor sent back (an error reply that echoes them).

Adapters apply them where the text is made (the error message, the log record), so
no exception, log line, state, artifact, event or stored row carries the secret.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx
from pydantic import SecretStr

HIDDEN = "<redacted>"


def redact_url(url: str | httpx.URL, *, keep_path: bool = False, keep_host: bool = True) -> str:
    """`url` as it may be shown: never its user info, query or fragment; its path
    only with `keep_path` (an API path, not a webhook's secret one); its scheme and
    host unless `keep_host` is False (then the path alone, as error messages show
    it)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return HIDDEN
    path = parsed.path if keep_path else (f"/{HIDDEN}" if parsed.path not in ("", "/") else "/")
    if not keep_host:
        return path
    query = f"?{HIDDEN}" if parsed.query else ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{path}{query}"


def redact(text: str, *secrets: str | SecretStr | None) -> str:
    """`text` with each secret value (as is, URL-encoded, and in the base64 forms
    HTTP Basic and SMTP AUTH PLAIN send) replaced by <redacted>."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value or len(value) < 4:
            continue
        for form in (value, quote(value, safe=""), base64.b64encode(value.encode()).decode()):
            text = text.replace(form, HIDDEN)
    return text
