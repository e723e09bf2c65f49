"""The one redaction of credential-bearing text (leadflow.integrations.redact)."""

from __future__ import annotations

import base64

from pydantic import SecretStr

from leadflow.integrations.redact import redact, redact_url


def test_a_url_never_shows_its_user_info_query_or_secret_path() -> None:
    hook = "https://user:pw@hooks.zapier.com/hooks/catch/4417/abcd?sig=s3cr3t#frag"
    assert redact_url(hook) == "https://hooks.zapier.com/<redacted>?<redacted>"
    assert redact_url(hook, keep_path=True) == (
        "https://hooks.zapier.com/hooks/catch/4417/abcd?<redacted>"
    )
    assert redact_url(hook, keep_path=True, keep_host=False) == "/hooks/catch/4417/abcd"
    assert redact_url(hook, keep_host=False) == "/<redacted>"
    assert redact_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
    assert redact_url("not a url at all \x00") in ("<redacted>", "/<redacted>")


def test_known_secrets_are_taken_out_of_text_in_every_form() -> None:
    secret = "p@ss word/1"
    said = f"535 bad {secret} {base64.b64encode(secret.encode()).decode()} p%40ss%20word%2F1"
    assert redact(said, SecretStr(secret), None) == "535 bad <redacted> <redacted> <redacted>"
    assert redact("nothing here", "abc") == "nothing here"  # too short to be a secret
