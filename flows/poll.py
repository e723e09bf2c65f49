"""`poll_leads`: every new lead file dropped in a folder, processed once.

The `poll-leads` deployment (deployments/prefect.yaml) runs this every minute, so
sales operations can drop an export (CSV, TSV, workbook, JSON) in the folder and walk
away. Each poll lists the folder, and for each file ready to read takes it in the ledger
(leadflow/ledger.py) by the sha256 of its content before running `process_file` on
it. The ledger is what makes it "once": a rerun, two polls overlapping (a slow file
outlasting the interval) or two workers on the same folder find the content taken and
skip it, and so does a copy of a file under a new name.

Each file is a `process-file` child flow run, awaited with `return_state=True`: a file
whose leads failed (or none of whose records could be processed) ends its own run
Failed, is marked failed in the ledger and does not stop the files after it. The poll
then ends Failed too, naming the files, so a schedule's run history shows it; the
poller does not retry a failed file (it would fail the same way every minute), the
`process-file` deployment does once the cause is fixed.

An interrupted poll (its process killed, the run cancelled) leaves its file claimed
under the poll's flow run id. The next poll asks Prefect about that run: once it is in
a final state, the file is resumed from the start; the leads done before the
interruption are skipped by their once-only keys and the rest are done, so none is
skipped and none repeated. A claim whose run is still going is left to it.

Files run one after another: `process_file` already runs its leads in overlapped
groups, up to the configured limit, and a second file in parallel would only compete
for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.context import current_runtime
from leadflow.flows.files import process_file
from leadflow.integrations.file_source import SUFFIXES
from leadflow.ledger import FileLedger, FileStatus, LedgerEntry, content_digest, ready_files
from leadflow.logging import get_logger

log = get_logger(__name__)


class PollFailedError(RuntimeError):
    """Some files of the poll failed; the others were processed. The summary says which."""

    def __init__(self, summary: PollSummary) -> None:
        super().__init__(f"{len(summary.failed)} files failed: {', '.join(summary.failed)}")
        self.summary = summary

    def __reduce__(self):
        return (type(self), (self.summary,))


class PollSummary(BaseModel):
    """What one poll did, by file name."""

    folder: str
    processed: list[str] = Field(default_factory=list, description="processed, run Completed")
    failed: list[str] = Field(default_factory=list, description="processed, run Failed")
    skipped: list[str] = Field(default_factory=list, description="content already taken")
    waiting: list[str] = Field(
        default_factory=list, description="modified too recently; the next poll looks again"
    )


@flow(name="poll-leads", on_failure=[alert_on_failure])
async def poll_leads(
    folder: str | None = None, settle_seconds: Annotated[float, Field(ge=0)] = 5.0
) -> PollSummary:
    """Process each lead file in `folder` whose content has not been processed before.

    Args:
        folder: The drop folder to watch, created if missing. Empty: the
            LEADFLOW_DROP_FOLDER setting (.leadflow/inbox by default).
        settle_seconds: A file modified less than this many seconds ago is left for
            the next poll, as it may still be being copied in. 0 or more.
    """
    runtime = current_runtime()
    drop = await asyncio.to_thread(_ready_folder, Path(folder or runtime.settings.drop_folder))
    ledger = FileLedger(runtime.settings.database_url)
    ready, fresh = await asyncio.to_thread(
        ready_files, drop, SUFFIXES, settle_seconds=settle_seconds
    )
    summary = PollSummary(folder=str(drop), waiting=[path.name for path in fresh])
    me = flow_run.get_id()

    for path in ready:
        try:
            digest = await asyncio.to_thread(content_digest, path)
        except FileNotFoundError:  # moved away since the listing: nothing to do
            log.info("file gone before it was read", file=path.name)
            continue
        holder = await ledger.claim(digest, path.name, claimant=me)
        if holder is not None and await _stopped(holder):
            log.info("resuming an interrupted file", file=path.name, claimant=holder.run_id)
            if await ledger.take_over(digest, path.name, claimant=me, previous=holder.run_id):
                holder = None
        if holder is not None:
            log.debug("file skipped", file=path.name, same_content_as=holder.name)
            summary.skipped.append(path.name)
            continue

        log.info("file taken", file=path.name, sha256=digest[:12])
        state = await process_file.with_options(flow_run_name=f"file-{path.name}")(
            path=str(path), return_state=True
        )
        ok = state.is_completed()
        run_id = state.state_details.flow_run_id
        await ledger.finish(
            digest,
            ok=ok,
            run_id=str(run_id) if run_id else None,
            detail=None if ok else state.message,
        )
        if ok:
            summary.processed.append(path.name)
        else:
            log.warning("file failed", file=path.name, reason=state.message)
            summary.failed.append(path.name)

    log.info(
        "poll done",
        folder=summary.folder,
        processed=len(summary.processed),
        failed=len(summary.failed),
        skipped=len(summary.skipped),
        waiting=len(summary.waiting),
    )
    if summary.failed:
        raise PollFailedError(summary)
    return summary


def _ready_folder(folder: Path) -> Path:
    """The drop folder, created if missing, as an absolute path: child runs and the
    quarantine then name files in a way that does not depend on the working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


async def _stopped(holder: LedgerEntry) -> bool:
    """Whether a file's claim belongs to a poll run that has stopped without finishing
    it (crashed, cancelled, or failed): then nobody will finish it, and this poll
    resumes it. A claim of a run still going, or of no known run, is left alone (the
    ledger's `stale_after` covers the last case)."""
    if holder.status is not FileStatus.CLAIMED or not holder.run_id:
        return False
    try:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(holder.run_id))
    except ObjectNotFound:
        return True  # a run the server does not know will not finish the file
    except ValueError:  # not a flow run id
        return False
    return run.state is not None and run.state.is_final()
