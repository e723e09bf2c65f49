"""Which column of a file is which lead field, as teams really export them.

Files come from CRMs and form tools with their own headers: `Email`, `E-mail
Address`, `Job Title`, `Number of Employees`, `Person - Email` (Pipedrive), `What is
your email address?` (Typeform, Google Forms). A header is normalised (case, spaces
and punctuation folded to `_`) and looked up in `ALIASES`; a team's own names go in
`LEADFLOW_COLUMNS` (e.g. `LEADFLOW_COLUMNS='{"Mail": "email"}'`), which wins over
the aliases. Columns that map to no lead field stay on the lead as attributes under
their own name, or under their normalised name when a scoring rule reads that name
(`Demo Requested` feeds the `demo_requested` rule).

`map_columns` says what happened to every column, so a run can report it once, and
raises `ColumnError` when nothing maps to email: every row would be set aside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from leadflow.models import LEAD_FIELDS

# Normalised header -> lead field. Sources: HubSpot, Salesforce and Pipedrive
# exports, Typeform / Google Forms question titles, and common spreadsheet habits.
ALIASES: dict[str, str] = {
    **dict.fromkeys(
        [
            "e_mail",
            "email_address",
            "e_mail_address",
            "mail",
            "work_email",
            "business_email",
            "primary_email",
            "contact_email",
            "your_email",
            "email_work",  # Pipedrive: "Email - Work"
        ],
        "email",
    ),
    **dict.fromkeys(
        ["firstname", "first", "given_name", "forename", "your_first_name"], "first_name"
    ),
    **dict.fromkeys(["lastname", "last", "surname", "family_name", "your_last_name"], "last_name"),
    **dict.fromkeys(
        [
            "company_name",
            "organization",
            "organisation",
            "organization_name",  # Pipedrive: "Organization - Name"
            "organisation_name",
            "account_name",  # Salesforce
            "account",
            "employer",
        ],
        "company",
    ),
    **dict.fromkeys(["job_title", "jobtitle", "position", "role", "job_role"], "title"),
    **dict.fromkeys(
        ["country_region", "country_code", "mailing_country", "billing_country", "ip_country"],
        "country",
    ),
    **dict.fromkeys(
        ["lead_source", "leadsource", "original_source", "source_of_lead", "utm_source"],
        "source",
    ),
    **dict.fromkeys(
        [
            "employees",
            "number_of_employees",  # HubSpot
            "numberofemployees",  # Salesforce API name
            "num_employees",
            "no_of_employees",
            "employee_count_range",
            "company_size",
            "headcount",
            "staff",
        ],
        "employee_count",
    ),
    **dict.fromkeys(
        [
            "create_date",  # HubSpot
            "created_date",  # Salesforce
            "createddate",
            "created",
            "date_created",
            "submitted_at",  # Typeform
            "submit_date",
            "timestamp",  # Google Forms
            "lead_created",
        ],
        "created_at",
    ),
    **dict.fromkeys(
        ["record_id", "contact_id", "lead_id", "leadid", "external_id"],  # HubSpot, Salesforce
        "id",
    ),
    **dict.fromkeys(
        ["company_domain", "company_domain_name", "email_domain", "website_domain"], "domain"
    ),
}

# Prefixes some tools put before every column ("Person - Email", "Lead - Source").
_ENTITY_PREFIXES = ("person_", "contact_", "lead_", "organization_", "organisation_", "company_")

# Question-style headers (form tools): the field a header is about when it mentions it.
_KEYWORDS = {"email": "email", "e_mail": "email"}


def normalise(header: str) -> str:
    """`E-mail Address ` -> `e_mail_address`; `What's your email?` -> `what_s_your_email`."""
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")


class ColumnError(ValueError):
    """No column of the file can be the lead's email."""


@dataclass
class ColumnMap:
    """What each header of one file becomes: `renames` maps every original header to
    the key its value is stored under; the lists are for the run's report."""

    renames: dict[str, str] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # already a lead field or rule name
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (header, field)
    ignored: list[str] = field(default_factory=list)  # neither: kept as attributes
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (header, field)

    def apply(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record with its keys renamed; a later duplicate column never overwrites
        the first column that mapped to a field."""
        out: dict[str, object] = {}
        for key, value in record.items():
            name = self.renames.get(key, key)
            if name not in out:
                out[name] = value
        return out

    def report(self) -> str:
        """One line per group, e.g. `columns mapped: Email -> email, Job Title -> title`."""
        lines = []
        if self.used:
            lines.append("columns used: " + ", ".join(self.used))
        if self.mapped:
            lines.append(
                "columns mapped: " + ", ".join(f"{header} -> {to}" for header, to in self.mapped)
            )
        if self.duplicates:
            lines.append(
                "columns skipped: "
                + ", ".join(f"{header} (a second {to})" for header, to in self.duplicates)
            )
        if self.ignored:
            lines.append(
                "columns ignored (no lead field or scoring rule reads them): "
                + ", ".join(self.ignored)
            )
        return "\n".join(lines)


def map_columns(
    headers: Iterable[str],
    *,
    custom: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
    origin: str = "",
) -> ColumnMap:
    """Decide what every header becomes. `custom` maps a header (as written, or
    normalised) to a lead field or attribute name; `rule_attributes` are the names
    the scoring rules read. Raises ColumnError when nothing maps to email."""
    custom_by_name = {normalise(k): v for k, v in (custom or {}).items()}
    wanted = set(rule_attributes)
    taken: set[str] = set()
    result = ColumnMap()
    headers = [h for h in headers if isinstance(h, str)]
    # Exact lead-field names first, so `email` wins over a `Work Email` beside it.
    order = sorted(headers, key=lambda h: h.strip() not in LEAD_FIELDS)
    for header in order:
        target, how = _target(header, custom_by_name, wanted)
        if target is None:
            result.renames[header] = header.strip()
            result.ignored.append(header.strip())
        elif target in taken:
            result.renames[header] = header.strip()
            result.duplicates.append((header.strip(), target))
        else:
            taken.add(target)
            result.renames[header] = target
            if how == "same":
                result.used.append(target)
            else:
                result.mapped.append((header.strip(), target))
    # Report in the file's column order.
    position = {h.strip(): i for i, h in enumerate(headers)}
    target_position = {to: position[h.strip()] for h, to in result.renames.items()}
    result.ignored.sort(key=lambda header: position[header])
    result.duplicates.sort(key=lambda item: position[item[0]])
    result.mapped.sort(key=lambda item: position[item[0]])
    result.used.sort(key=lambda name: target_position[name])
    if "email" not in taken:
        shown = ", ".join(repr(h) for h in headers) or "none"
        where = f"{origin}: " if origin else ""
        raise ColumnError(
            f"{where}no column for the lead's email; the header has {shown}. Name the "
            'email column `email`, or map it: LEADFLOW_COLUMNS=\'{"<your header>": "email"}\''
        )
    return result


def _target(header: str, custom: dict[str, str], wanted: set[str]) -> tuple[str | None, str]:
    stripped = header.strip()
    name = normalise(header)
    if name in custom:
        return custom[name], "custom"
    if stripped in LEAD_FIELDS or stripped in wanted:
        return stripped, "same"
    if name in LEAD_FIELDS or name in wanted:
        return name, "normalised"
    if name in ALIASES:
        return ALIASES[name], "alias"
    for prefix in _ENTITY_PREFIXES:
        rest = name.removeprefix(prefix)
        if rest != name and (rest in LEAD_FIELDS or rest in ALIASES):
            return ALIASES.get(rest, rest), "alias"
    words = f"_{name}_"
    for keyword, target in _KEYWORDS.items():
        if f"_{keyword}_" in words:
            return target, "keyword"
    return None, "none"
