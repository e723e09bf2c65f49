"""The exceptions adapters raise, so the pipeline can tell what to retry.

    AdapterError                 base of everything an adapter raises on purpose
    ├── TransientError           worth retrying: timeouts, connection errors, 5xx
    │   └── RateLimited          429 (or 503) with the server's Retry-After, if any
    └── PermanentError           retrying cannot help: 400, 404, 409, 422, bad data
        └── AuthenticationError  401, 403: the credentials are wrong or lack a scope

Messages name the adapter, the operation and the status; they never carry request
headers, query strings or bodies, where credentials live.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base for errors raised by adapters."""


class TransientError(AdapterError):
    """A failure that may succeed on retry."""


class RateLimited(TransientError):
    """The vendor asked us to slow down; `retry_after` is its wait in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(AdapterError):
    """A failure that will fail the same way on retry."""


class AuthenticationError(PermanentError):
    """The vendor refused our credentials (401) or their scope (403)."""
