"""`replay_quarantine`: send set-aside records through the pipeline again.

Either as stored (after a rules or validation change) or from a corrected copy
written by `leadflow quarantine export` (each line keeps its `_quarantine_key`). The
leads go through the one engine (flows/engine.py), in groups, inside this flow run.

A record that now passes is processed and leaves the quarantine. One that still
fails stays: unchanged, it keeps its place; changed, the new version is set aside as
its own record (with the new reason) and the old one leaves the queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from leadflow.flows.context import current_runtime
from leadflow.flows.engine import run_leads
from leadflow.flows.summary import FailedBranch, SetAside
from leadflow.intake import RawRecord, Rejection, rejection_key, validate_record
from leadflow.logging import get_logger
from leadflow.models import Lead

log = get_logger(__name__)

KEY_FIELD = "_quarantine_key"
REASON_FIELD = "_reason"


class ReplaySummary(BaseModel):
    replayed: int = 0
    still_set_aside: list[SetAside] = Field(default_factory=list)
    failed: list[FailedBranch] = Field(default_factory=list)


def read_corrections(path: Path) -> list[tuple[str | None, dict[str, Any]]]:
    """(quarantine key, corrected record) per line of an exported JSONL file."""
    import json

    corrections = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            key = record.pop(KEY_FIELD, None)
            record.pop(REASON_FIELD, None)
            corrections.append((key, record))
    return corrections


@flow(name="replay-quarantine")
async def replay_quarantine(corrected: str | None = None) -> ReplaySummary:
    """Replay pending quarantined records, or the corrected copies in `corrected`."""
    runtime = current_runtime()
    pending = {r.key: r for r in await runtime.quarantine.pending()}
    items: list[tuple[str | None, RawRecord]]
    if corrected is None:
        items = [
            (r.key, RawRecord(origin=r.origin, position=r.position, data=r.data))
            for r in pending.values()
        ]
    else:
        items = []
        for key, data in read_corrections(Path(corrected)):
            source = pending.get(key) if key else None
            origin, position = (source.origin, source.position) if source else (corrected, 0)
            items.append((key, RawRecord(origin=origin, position=position, data=data)))

    summary = ReplaySummary()
    leads: list[tuple[str | None, Lead]] = []
    fresh_rejections: list[Rejection] = []
    leaving: list[str] = []
    for key, record in items:
        checked = validate_record(record)
        if isinstance(checked, Lead):
            leads.append((key, checked))
            continue
        if corrected is None and key in pending:  # unchanged: its reason as first found
            checked = pending[key]  # (a malformed row's, or the cells a short row lacked)
        summary.still_set_aside.append(SetAside.of(checked))
        if key is not None and key in pending and rejection_key(record) != key:
            fresh_rejections.append(checked)
            leaving.append(key)
    await runtime.quarantine.put(fresh_rejections)

    results = await run_leads(runtime, [lead for _, lead in leads])
    for (key, _lead), result in zip(leads, results, strict=True):
        summary.failed += FailedBranch.all_in(result)
        if isinstance(result, FailedBranch):
            continue
        summary.replayed += 1
        if key is not None and key in pending:
            leaving.append(key)
    await runtime.quarantine.mark_replayed(leaving)
    log.info(
        "quarantine replayed",
        replayed=summary.replayed,
        still_set_aside=len(summary.still_set_aside),
        failed=len(summary.failed),
    )
    return summary
