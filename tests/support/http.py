"""HTTP helpers for tests: a mocked vendor call's JSON body."""

from __future__ import annotations

import json


def body(call) -> dict:
    return json.loads(call.request.content)
