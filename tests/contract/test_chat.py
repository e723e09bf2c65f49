"""Slack and Teams notifier contracts.

Slack incoming webhook: https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks
Slack chat.postMessage: https://docs.slack.dev/reference/methods/chat.postMessage
Slack escaping: https://docs.slack.dev/messaging/formatting-message-text
Teams Workflows webhook: https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
"""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from pydantic import SecretStr

from leadflow.integrations.errors import (
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.slack import (
    SlackNotifier,
    SlackSettings,
    SlackWebhookNotifier,
    SlackWebhookSettings,
    escape,
)
from leadflow.integrations.teams import TeamsNotifier, TeamsSettings, escape_markdown
from tests.support.builders import make_decision, make_lead
from tests.support.http import body

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
TEAMS = "https://prod-00.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SIG"
TOKEN = "xoxb-123-456-secret"
HOSTILE = {
    "first_name": "<!channel>",
    "last_name": "@here <@U024BE7LH>",
    "company": "<https://evil.test|click me> & co",
}


def _webhook(transport, **extra) -> SlackWebhookNotifier:
    return SlackWebhookNotifier(
        SlackWebhookSettings(_env_file=None, url=SecretStr(HOOK), **extra), transport=transport
    )


def _bot(transport, **extra) -> SlackNotifier:
    return SlackNotifier(
        SlackSettings(_env_file=None, token=SecretStr(TOKEN), channel="C0123", **extra),
        transport=transport,
    )


def _all_text(payload: dict) -> str:
    return json.dumps(payload)


# --- Slack incoming webhook ------------------------------------------------------


async def test_webhook_posts_block_kit_with_a_fallback(router: respx.Router, transport) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
    lead = make_lead(1, demo_requested="yes")
    await _webhook(transport).notify(lead, make_decision(lead), idempotency_key="notify:1")

    sent = body(route.calls.last)
    assert route.calls.last.request.headers["content-type"] == "application/json"
    assert sent["text"].startswith("Hot lead (72): Ava Stone, VP Sales at Northwind")
    assert "Follow-up: call, due 2026-11-22 09:15 UTC (SLA 15 min)" in sent["text"]
    blocks = sent["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Assigned to*\nrep.one@example.test" in fields
    assert "*Score*\n72 (hot)" in fields
    why = blocks[2]["text"]["text"]
    # the top three reasons, largest first
    assert why.splitlines()[1:] == [
        "• +30 fit: title: vp",
        "• +25 engagement: demo_requested",
        "• +10 fit: country: US",
    ]


async def test_lead_data_cannot_mention_anyone_or_inject_a_link(router, transport) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
    lead = make_lead(2, **HOSTILE)
    await _webhook(transport).notify(lead, make_decision(lead), idempotency_key="notify:2")

    sent = body(route.calls.last)
    mrkdwn = [sent["text"]] + [
        item["text"]
        for block in sent["blocks"]
        for item in [block.get("text") or {}, *block.get("fields", []), *block.get("elements", [])]
        if item.get("type") == "mrkdwn"
    ]
    for text in mrkdwn:
        assert "<" not in text and ">" not in text  # no <!channel>, <@U..>, <url|label>
    assert "&lt;!channel&gt;" in sent["text"]
    assert "&lt;https://evil.test|click me&gt; &amp; co" in sent["text"]
    assert escape("a&b<c>d*e_@here") == "a&amp;b&lt;c&gt;d*e_@here"  # only &, <, >


@pytest.mark.parametrize(
    ("status", "text", "error", "fragment"),
    [
        (400, "invalid_payload", PermanentError, "invalid_payload"),
        (403, "action_prohibited", AuthenticationError, "action_prohibited"),
        (404, "channel_not_found", PermanentError, "channel_not_found"),
        (410, "channel_is_archived", PermanentError, "channel_is_archived"),
        (500, "rollup_error", TransientError, "rollup_error"),
    ],
)
async def test_webhook_errors_name_slacks_code_not_the_url(
    router, transport, status, text, error, fragment
) -> None:
    router.post(HOOK).mock(return_value=httpx.Response(status, text=text))
    lead = make_lead()
    with pytest.raises(error) as caught:
        await _webhook(transport).notify(lead, make_decision(lead), idempotency_key="k")
    assert type(caught.value) is error
    assert fragment in str(caught.value)
    assert "XXXXSECRET" not in str(caught.value) and "/services/" not in str(caught.value)


async def test_webhook_429_pauses_the_limiter_for_retry_after(router, transport) -> None:
    router.post(HOOK).mock(return_value=httpx.Response(429, headers={"Retry-After": "30"}))
    notifier = _webhook(transport)
    lead = make_lead()
    with pytest.raises(RateLimited) as caught:
        await notifier.notify(lead, make_decision(lead), idempotency_key="k")
    assert caught.value.retry_after == 30.0
    assert notifier.http.limiter._wait_needed(notifier.http.limiter._clock()) > 29


async def test_digest_one_message_per_rep_hot_first(router, transport) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
    items = []
    for i, (rep, score, tier) in enumerate(
        [
            ("a@x.test", 20, "cold"),
            ("b@x.test", 90, "hot"),
            ("a@x.test", 85, "hot"),
            ("a@x.test", 50, "warm"),
        ]
    ):
        lead = make_lead(i)
        decision = make_decision(lead, rep=rep, score=score).model_copy(update={"tier": tier})
        items.append((lead, decision, f"notify:{lead.id}"))

    await _webhook(transport).notify_many(items)

    assert route.call_count == 2  # one per rep
    digest = next(body(c) for c in route.calls if "a@x.test" in body(c)["text"])
    headlines = [b["text"]["text"].split("\n")[0] for b in digest["blocks"][1:]]
    assert [h.split(" ")[0] for h in headlines] == ["*Hot", "*Warm", "*Cold"]
    assert digest["blocks"][0]["text"]["text"] == "3 new leads for a@x.test"


# --- Slack chat.postMessage --------------------------------------------------------


async def test_post_message_sends_the_bot_token_and_channel(router, transport) -> None:
    route = router.post("https://slack.com/api/chat.postMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "channel": "C0123", "ts": "1.2"})
    )
    lead = make_lead()
    await _bot(transport).notify(lead, make_decision(lead), idempotency_key="notify:1")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = body(route.calls.last)
    assert sent["channel"] == "C0123"
    assert sent["unfurl_links"] is False and sent["unfurl_media"] is False
    assert sent["blocks"][0]["type"] == "header" and sent["text"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.Response(200, json={"ok": False, "error": "channel_not_found"}), PermanentError),
        (httpx.Response(200, json={"ok": False, "error": "invalid_auth"}), AuthenticationError),
        (httpx.Response(200, json={"ok": False, "error": "internal_error"}), TransientError),
        (
            httpx.Response(
                200, headers={"Retry-After": "4"}, json={"ok": False, "error": "ratelimited"}
            ),
            RateLimited,
        ),
        (httpx.Response(429, headers={"Retry-After": "4"}), RateLimited),
    ],
    ids=["channel_not_found", "invalid_auth", "internal_error", "ratelimited-200", "429"],
)
async def test_post_message_ok_false_is_an_error(router, transport, reply, error) -> None:
    router.post("https://slack.com/api/chat.postMessage").mock(return_value=reply)
    lead = make_lead()
    with pytest.raises(error) as caught:
        await _bot(transport).notify(lead, make_decision(lead), idempotency_key="k")
    assert type(caught.value) is error
    assert TOKEN not in str(caught.value)
    if error is RateLimited:
        assert caught.value.retry_after == 4.0


async def test_probe_calls_auth_test(router, transport) -> None:
    router.post("https://slack.com/api/auth.test").mock(
        return_value=httpx.Response(200, json={"ok": True, "user": "leadbot", "team": "Acme"})
    )
    assert await _bot(transport).probe() == "authenticated as leadbot in Acme"


# --- Teams -------------------------------------------------------------------------


async def test_teams_posts_an_adaptive_card(router, transport) -> None:
    route = router.post(TEAMS).mock(return_value=httpx.Response(202))
    lead = make_lead(3, **HOSTILE)
    notifier = TeamsNotifier(
        TeamsSettings(_env_file=None, url=SecretStr(TEAMS)), transport=transport
    )
    await notifier.notify(lead, make_decision(lead), idempotency_key="notify:3")

    sent = body(route.calls.last)
    assert sent["type"] == "message"
    attachment = sent["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Assigned to"] == escape_markdown("rep.one@example.test")
    # a Markdown link in lead data is escaped, so Teams shows it as text
    assert r"\<https://evil\.test\|click me\>" in card["body"][0]["text"]
    assert escape_markdown("[x](https://evil.test)") == r"\[x\]\(https://evil\.test\)"


async def test_teams_errors_keep_the_signed_url_out(router, transport) -> None:
    router.post(TEAMS).mock(return_value=httpx.Response(400, json={"error": "bad card"}))
    notifier = TeamsNotifier(
        TeamsSettings(_env_file=None, url=SecretStr(TEAMS)), transport=transport
    )
    lead = make_lead()
    with pytest.raises(PermanentError) as caught:
        await notifier.notify(lead, make_decision(lead), idempotency_key="k")
    assert "sig=" not in str(caught.value) and "workflows" not in str(caught.value)


# --- size limits: Teams 28 KB a message, Slack 3,000 characters a section -------------

LONG = {
    "first_name": "&" * 255,
    "last_name": "<" * 255,
    "company": "C" * 255,
    "title": "*" * 255,
}


def _items(n: int, **extra) -> list:
    leads = [make_lead(i, **extra) for i in range(n)]
    return [(lead, make_decision(lead), f"notify:{lead.id}") for lead in leads]


def _teams(transport) -> TeamsNotifier:
    settings = TeamsSettings(_env_file=None, url=SecretStr(TEAMS), rate_limit_requests=1000)
    return TeamsNotifier(settings, transport=transport)


@pytest.mark.parametrize(("leads", "extra"), [(100, {}), (20, LONG), (300, LONG)])
async def test_teams_digests_stay_under_28_kb_and_lose_no_lead(
    router, transport, leads: int, extra: dict
) -> None:
    route = router.post(TEAMS).mock(return_value=httpx.Response(202))
    await _teams(transport).notify_many(_items(leads, **extra))

    sizes = [len(call.request.content) for call in route.calls]
    assert max(sizes) <= 28 * 1024, sizes
    listed = sum(len(body(call)["attachments"][0]["content"]["body"]) - 1 for call in route.calls)
    assert listed == leads  # every lead in one digest part, none dropped
    assert len(route.calls) > 1 or not extra  # long leads: the digest was split


@pytest.mark.parametrize("notifier", ["webhook", "bot"])
async def test_slack_sections_stay_under_3000_characters_and_lose_no_lead(
    router, transport, notifier: str
) -> None:
    if notifier == "webhook":
        route = router.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
        adapter = _webhook(transport, rate_limit_requests=1000)
    else:
        route = router.post("https://slack.com/api/chat.postMessage").mock(
            return_value=httpx.Response(200, json={"ok": True})
        )
        adapter = _bot(transport, rate_limit_requests=1000)
    await adapter.notify_many(_items(95, **LONG))
    await adapter.notify(*_items(1, **{**LONG, "email": "one@x.test"})[0][:2], idempotency_key="k")

    blocks = [block for call in route.calls for block in body(call)["blocks"]]
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert texts and max(len(t) for t in texts) <= 3000
    assert max(len(f) for f in fields) <= 2000
    assert all(len(body(call)["blocks"]) <= 50 for call in route.calls)
    digests = [call for call in route.calls if "new leads for" in body(call)["text"]]
    assert len(digests) == 3  # 95 leads: 40 + 40 + 15, none left out
    assert sum(len(body(c)["blocks"]) - 1 for c in digests) == 95
    for text in texts:  # cut lead text never leaves half an escape behind
        assert not text.rstrip("…").endswith(("&", "&a", "&am", "&l", "&lt", "&g", "&gt"))
