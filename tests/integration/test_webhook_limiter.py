"""The webhook notifier's client-side limits, against a real server on loopback."""

from __future__ import annotations

import asyncio

from leadflow.integrations.ratelimit import RateLimiter
from leadflow.integrations.webhook_notifier import WebhookNotifier
from tests.support.builders import sample_decision, sample_lead
from tests.support.webhook import hook_url


async def test_requests_stay_within_the_configured_window_and_concurrency(webhook_server):
    webhook_server.latency = 0.05
    limiter = RateLimiter(requests=3, per_seconds=0.4, max_concurrent=2)
    notifier = WebhookNotifier(hook_url(webhook_server), limiter=limiter)
    lead = sample_lead()
    decision = sample_decision(lead)
    try:
        await asyncio.gather(
            *(notifier.notify(lead, decision, idempotency_key=f"notify:{i}") for i in range(7))
        )
    finally:
        await notifier.aclose()
    arrivals = sorted(request.at for request in webhook_server.received)
    assert len(arrivals) == 7
    for first, fourth in zip(arrivals, arrivals[3:], strict=False):
        assert fourth - first >= 0.4 - 0.02  # never 4 starts within one window
