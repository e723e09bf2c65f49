"""`observed:PATH` or `observed:crm`: for a current process that cannot be called (a
zap, a CRM workflow, a person), what it actually decided, read after the fact.

- `observed:decisions.csv` (or `.jsonl`): an export with one row per lead;
- `observed:crm`: the fields the process wrote on the CRM contact (its owner, and
  whatever the CRM's look-up returns as enrichment: lifecycle stage, score).

A lead is matched by its id, else by its email (`LEADFLOW_OBSERVED_MATCH_BY`). Their
column names map onto Decision fields with `LEADFLOW_OBSERVED_FIELDS`, a JSON object
(`{"owner": "rep", "lifecycle_stage": "tier", "hs_score": "score"}`); columns named
like a Decision field map to it without being listed. Only mapped fields are compared:
an export without an SLA column leaves the SLA out of the comparison. A lead that is
not in the export is an error for that lead ("not observed"), never a mismatch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import CRM
from leadflow.integrations.legacy_common import AnsweringLegacy
from leadflow.models import Decision, Lead, lead_id_of
from leadflow.settings import AdapterSettings, Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings

MatchKey = Literal["id", "email"]
MATCH_KEYS: tuple[MatchKey, ...] = ("id", "email")

DEFAULT_FIELDS = {"owner": "rep"}


class ObservedSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_OBSERVED_")

    fields: dict[str, str] = Field(
        default_factory=dict,
        description='their column -> Decision field, JSON: {"owner": "rep"}',
    )
    match_by: list[MatchKey] = Field(
        default_factory=lambda: list(MATCH_KEYS), description="keys tried in order"
    )


class NotObservedError(LookupError):
    """The export (or the CRM) has nothing for this lead."""


class ObservedLegacy(AnsweringLegacy[ObservedSettings]):
    name = "observed"
    settings_class = ObservedSettings

    def __init__(
        self,
        path: Path | None = None,
        *,
        crm: CRM | None = None,
        fields: dict[str, str] | None = None,
        match_by: Sequence[MatchKey] | None = None,
    ) -> None:
        self.path = path
        self.crm = crm
        self.fields = {**DEFAULT_FIELDS, **(fields or {})}
        self.match_by: list[MatchKey] = list(match_by or MATCH_KEYS)
        self._rows: dict[tuple[str, str], dict[str, Any]] | None = None
        self._columns: set[str] = set()

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: ObservedSettings, *, shadow: ShadowSettings
    ) -> Self:
        bad = {f for f in own.fields.values() if f not in Decision.model_fields}
        if bad:
            raise SettingsError(
                f"LEADFLOW_OBSERVED_FIELDS: {', '.join(sorted(bad))} is not a Decision field "
                f"(fields: {', '.join(Decision.COMPARED_FIELDS)})"
            )
        if target == "crm":
            from leadflow.integrations.wiring import build_adapter

            crm = build_adapter("crm", settings.adapters.crm, settings)
            return cls(crm=crm, fields=own.fields, match_by=own.match_by)
        path = Path(target)
        if path.suffix.lower() not in (".csv", ".jsonl") or not path.is_file():
            raise SettingsError(f"--legacy observed:{target}: expected an existing .csv or .jsonl")
        return cls(path, fields=own.fields, match_by=own.match_by)

    @property
    def provides(self) -> tuple[str, ...]:
        if self.crm is not None:
            mapped = set(self.fields.values())
        else:
            self._load()
            mapped = {f for column in self._columns if (f := self._field_for(column))}
        return tuple(f for f in Decision.COMPARED_FIELDS if f in mapped)

    def _field_for(self, column: str) -> str | None:
        if column in self.fields:
            return self.fields[column]
        return column if column in Decision.model_fields else None

    def _load(self) -> dict[tuple[str, str], dict[str, Any]]:
        if self._rows is not None:
            return self._rows
        assert self.path is not None
        with self.path.open(newline="", encoding="utf-8") as handle:
            if self.path.suffix.lower() == ".csv":
                rows = list(csv.DictReader(handle))
            else:
                rows = [json.loads(line) for line in handle if line.strip()]
        self._rows = {}
        for row in rows:
            self._columns.update(row)
            if row.get("lead_id") or row.get("id"):
                self._rows[("id", str(row.get("lead_id") or row.get("id")).strip())] = row
            if row.get("email"):
                self._rows[("email", str(row["email"]).strip().lower())] = row
        return self._rows

    async def answer(self, record: dict) -> Any:
        row = await (self._from_crm(record) if self.crm else self._from_export(record))
        decision: dict[str, Any] = {}
        for column, value in row.items():
            field = self._field_for(column)
            if field and value not in (None, ""):
                decision[field] = value
        return decision

    async def _from_export(self, record: dict) -> dict[str, Any]:
        rows = self._load()
        keys = {
            "id": lead_id_of(record) or "",
            "email": str(record.get("email") or "").strip().lower(),
        }
        for by in self.match_by:
            if keys[by] and (by, keys[by]) in rows:
                return rows[(by, keys[by])]
        raise NotObservedError(f"lead {keys['id']} ({keys['email']}): not in {self.path}")

    async def _from_crm(self, record: dict) -> dict[str, Any]:
        assert self.crm is not None
        match = await self.crm.look_up(Lead.from_record(record))
        if match.contact_id is None:
            raise NotObservedError(f"lead {lead_id_of(record)}: no CRM contact")
        return {"owner": match.contact_owner, **match.enrichment}

    async def aclose(self) -> None:
        if self.crm is not None:
            await self.crm.aclose()
