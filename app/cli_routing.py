"""The routing commands: `leadflow why EMAIL` (why a lead got its tier and its owner).

Registered on the main `leadflow` app by leadflow.app.cli. They read leadflow's
database and the rules file only: no Prefect server, no vendor.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from leadflow.app.console import checked_settings, fail, out


def why(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
) -> None:
    """Why a lead got its tier and its owner: the stored decision with the score's
    reasons, and the facts its assignment was made from (territory, team, weights and
    round-robin credits, who was skipped and why, the SLA). Exit 1 when leadflow has
    no decision stored for EMAIL."""
    from leadflow.db import dispose_engines
    from leadflow.why import describe, explain

    settings = checked_settings(verbose=False)

    async def read():
        try:
            return await explain(settings.database_url, email)
        finally:
            await dispose_engines()

    found = asyncio.run(read())
    if not found:
        raise fail(f"no decision stored for {email.strip().lower()}", code=1)
    for index, explanation in enumerate(found):
        if index:
            out.print()
        out.print("\n".join(describe(explanation)), highlight=False, soft_wrap=True)
