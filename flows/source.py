"""`poll_source`: one poll of the configured lead source (`LEADFLOW_ADAPTERS__SOURCE`,
e.g. `http` or `hubspot`), every new lead through the engine in this flow run.

The source keeps its own watermark, so each run takes only what arrived since the
last one; schedule the flow (or run `leadflow poll-source`) as often as leads should
be picked up. Each valid record is written to leadflow's inbox (leadflow.stores.inbox)
before anything else happens to it: a poll that dies half-way leaves its leads there,
and the next poll (or a receiver starting) finishes them. Bad records go to the
quarantine, as for files. The source's watermark is committed right after each
accept (the protocol of `LeadSource`), never while it is being read: when the
source fails half-way (a page answered 503), the records it gave before are
accepted and committed, the run ends Failed naming the failure, and the next poll
reads the failed page again. The poll first takes the inbox's unfinished leads whose
holder is gone. The file source is served by `process_file`, which takes a path.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from prefect import flow

from leadflow.flows.context import current_runtime
from leadflow.flows.engine import Group, Pipeline
from leadflow.flows.stream import InboxRunner
from leadflow.flows.summary import FileRunSummary, LeadResult, LeadsFailedError, RunTally
from leadflow.intake import RawRecord, Rejection, validate_record
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


async def until_failure(
    records: AsyncIterator[RawRecord], failed: list[Exception]
) -> AsyncIterator[RawRecord]:
    """The source's records until it fails; the failure is noted in `failed`, not
    raised, so what it yielded before is still accepted and committed."""
    try:
        async for record in records:
            yield record
    except Exception as exc:
        failed.append(exc)


@flow(name="poll-source")
async def poll_source() -> FileRunSummary:
    """Take what the configured source has since its watermark and process it."""
    runtime = current_runtime()
    started = time.perf_counter()
    source = configured_source(runtime)
    size = runtime.settings.pipeline.batch_size
    tally = RunTally(f"source {source.name}", size)

    async def counted(_group: Group | None, results: Sequence[LeadResult]) -> None:
        tally.add(results)

    pipeline = Pipeline(runtime, in_flight=runtime.settings.pipeline.concurrency)
    runner = InboxRunner(runtime, pipeline, counted)
    async with runtime.inbox.holding():
        if orphans := await runtime.inbox.take():
            log.info("finishing leads accepted earlier and not finished", leads=len(orphans))
            for start in range(0, len(orphans), size):
                await runner.submit(orphans[start : start + size])
        page: list = []
        failed: list[Exception] = []
        try:
            async for record in until_failure(source.records(), failed):
                checked = validate_record(record)
                if isinstance(checked, Rejection):
                    await runtime.quarantine.put([checked])
                    tally.set_aside([checked])
                    continue
                page.append((checked.id, record.origin, record.position, record.data))
                if len(page) >= size:
                    accepted = await runtime.inbox.accept(page)
                    await source.commit()
                    await runner.submit(accepted)
                    page = []
            accepted = await runtime.inbox.accept(page) if page else []
            await source.commit()
            if accepted:
                await runner.submit(accepted)
        finally:
            await source.aclose()
        await pipeline.drain()
    summary = tally.final(time.perf_counter() - started)
    if failed:
        summary.source_error = f"{source.name}: {failed[0]}"
        log.error("source failed; the next poll reads from there again", error=str(failed[0]))
    log.info(
        "source polled",
        source=source.name,
        leads=summary.processed,
        set_aside=summary.set_aside_total,
    )
    if summary.failed_total or summary.nothing_processed or summary.source_error:
        raise LeadsFailedError(summary)
    return summary
