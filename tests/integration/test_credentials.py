"""Credentials from the environment or from a Prefect Secret block, on the session's
real Prefect API."""

from __future__ import annotations

import httpx
import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import AuthenticationError
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings


async def test_a_value_from_the_environment_needs_no_prefect() -> None:
    credential = Credential("LEADFLOW_X_TOKEN", SecretStr("abc"))
    assert (await credential.get()).get_secret_value() == "abc"
    assert "abc" not in repr(credential)


async def test_a_prefect_secret_block_is_read_once(prefect_api) -> None:
    await Secret(value="pat-from-prefect").save("leadflow-test-hubspot", overwrite=True)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"results": []})

    crm = HubSpotCRM(
        HubSpotSettings(_env_file=None, token_block="leadflow-test-hubspot"),
        transport=httpx.MockTransport(handler),
    )
    assert await crm.probe() == "contacts readable"
    await Secret(value="changed-later").save("leadflow-test-hubspot", overwrite=True)
    await crm.probe()
    await crm.aclose()
    assert seen == ["Bearer pat-from-prefect"] * 2


async def test_a_missing_block_is_an_authentication_error(prefect_api) -> None:
    credential = Credential("LEADFLOW_X_TOKEN", None, "no-such-block-here")
    with pytest.raises(
        AuthenticationError, match="LEADFLOW_X_TOKEN_BLOCK: no Prefect Secret block"
    ):
        await credential.get()
