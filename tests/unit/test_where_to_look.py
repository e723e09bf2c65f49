"""The command line points at the Prefect UI of the server it actually used."""

from __future__ import annotations

from uuid import UUID

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_API_PORT,
    PREFECT_UI_URL,
    temporary_settings,
)

from leadflow.app.console import where_to_look

RUN = UUID("3168358c-ae61-4385-81f8-224e0282f91f")


def test_a_server_named_by_prefect_api_url_is_the_one_shown():
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4321/api"}):
        assert where_to_look(RUN) == (
            f"This run in the Prefect UI: http://127.0.0.1:4321/runs/flow-run/{RUN}"
        )


def test_prefect_ui_url_wins_when_the_ui_is_served_elsewhere():
    with temporary_settings(
        {PREFECT_API_URL: "http://10.1.2.3:4200/api", PREFECT_UI_URL: "https://prefect.corp/"}
    ):
        assert where_to_look(RUN).endswith(f"https://prefect.corp/runs/flow-run/{RUN}")


def test_without_a_server_the_local_one_to_start_is_shown():
    with temporary_settings(
        {PREFECT_SERVER_API_PORT: 4300}, restore_defaults={PREFECT_API_URL, PREFECT_UI_URL}
    ):
        assert where_to_look(RUN) == (
            "Runs are kept by Prefect: `prefect server start`, "
            f"then http://127.0.0.1:4300/runs/flow-run/{RUN}"
        )
