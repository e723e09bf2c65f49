"""`shadow_report`: the stored comparisons over a window, as a verdict and a report.

Publishes keyed Prefect artifacts (`shadow-report` markdown, `shadow-report-agreement`
table), so each day's report stays in the UI's artifact history, and writes a
self-contained HTML file and a CSV of mismatches to `LEADFLOW_SHADOW__REPORT_DIR`.
The `shadow-report` deployment runs it daily.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from pydantic import BaseModel, Field

from leadflow.logging import get_logger
from leadflow.report import ShadowReport, build_report
from leadflow.report_render import agreement_table, as_html, as_markdown, mismatches_csv
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonStore

log = get_logger(__name__)


class ReportResult(BaseModel):
    verdict: str
    markdown: str
    html_path: str
    csv_path: str
    report: ShadowReport


@flow(name="shadow-report")
async def shadow_report(
    window_days: Annotated[int, Field(ge=1, le=366)] | None = None, out_dir: str | None = None
) -> ReportResult:
    """Agreement, mismatches, latency and the verdict over the last `window_days`
    (default LEADFLOW_SHADOW__WINDOW_DAYS, 14).

    Args:
        window_days: Days of shadow comparisons the report covers, counted back from
            now, 1 to 366. Empty: the LEADFLOW_SHADOW__WINDOW_DAYS setting (14).
        out_dir: Folder the HTML report and the CSV of mismatches are written to.
            Empty: the LEADFLOW_SHADOW__REPORT_DIR setting (.leadflow/reports).
    """
    settings = ShadowSettings()
    until = datetime.now(UTC)
    since = until - timedelta(days=window_days or settings.window_days)
    records = await ComparisonStore(settings.database_url).in_window(since, until)
    report = build_report(records, since=since, until=until, gates=settings.gates)
    markdown = as_markdown(report)
    folder = Path(out_dir or settings.report_dir)
    html_path = folder / "shadow-report.html"
    csv_path = folder / "shadow-mismatches.csv"
    await asyncio.to_thread(
        _write, folder, {html_path: as_html(report), csv_path: mismatches_csv(report)}
    )
    await acreate_markdown_artifact(
        key="shadow-report", markdown=markdown, description=f"verdict: {report.verdict}"
    )
    await acreate_table_artifact(
        key="shadow-report-agreement",
        table=agreement_table(report),
        description="agreement per Decision field",
    )
    log.info("shadow report", verdict=report.verdict, sample=report.sample, html=str(html_path))
    return ReportResult(
        verdict=report.verdict,
        markdown=markdown,
        html_path=str(html_path),
        csv_path=str(csv_path),
        report=report,
    )


def _write(folder: Path, files: dict[Path, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
