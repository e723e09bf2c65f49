"""`poll_source`: one poll of the configured lead source (`LEADFLOW_ADAPTERS__SOURCE`,
e.g. `http` or `hubspot`), every new lead through the pipeline in this flow run.

The source keeps its own watermark, so each run takes only what arrived since the
last one; schedule the flow (or run `leadflow poll-source`) as often as leads should
be picked up. Bad records go to the quarantine, as for files. The file source is
served by `process_file`, which takes a path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import flow

from leadflow.flows.context import current_runtime
from leadflow.flows.files import LeadsFailedError, run_leads, summarise
from leadflow.intake import Rejection, validate_record
from leadflow.integrations.base import LeadSource
from leadflow.integrations.wiring import build_adapter
from leadflow.logging import get_logger
from leadflow.settings import SettingsError

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)


def configured_source(runtime: Runtime) -> LeadSource:
    name = runtime.settings.adapters.source
    if name is None:
        raise SettingsError(
            "LEADFLOW_ADAPTERS__SOURCE is not set: poll-source needs a polled source (http, "
            "hubspot); a file is read by `leadflow run <file>`"
        )
    return build_adapter("source", name, runtime.settings)


@flow(name="poll-source")
async def poll_source():
    """Take what the configured source has since its watermark and process it."""
    runtime = current_runtime()
    source = configured_source(runtime)
    leads, bad, seen = [], [], set()
    try:
        async for record in source.records():
            checked = validate_record(record)
            if isinstance(checked, Rejection):
                bad.append(checked)
            elif checked.id not in seen:
                seen.add(checked.id)
                leads.append(checked)
    finally:
        await source.aclose()
    await runtime.quarantine.put(bad)
    results = await run_leads(runtime, leads)
    summary = summarise(f"source {source.name}", len(leads) + len(bad), results, bad)
    log.info("source polled", source=source.name, leads=len(leads), set_aside=len(bad))
    if summary.failed:
        raise LeadsFailedError(summary)
    return summary
