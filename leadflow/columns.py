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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from leadflow.models import LEAD_FIELDS

# Normalised header -> lead field. Sources: the export documentation and sample files
# of HubSpot, Salesforce (reports and data export), Pipedrive, Zoho CRM, Apollo,
# ZoomInfo, LinkedIn lead gen forms, Meta lead ads, Mailchimp, Typeform and Google
# Forms, and common spreadsheet habits.
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
            "emailaddress",
            "email_id",  # common in India-based CRMs and Zoho
            "work_email_address",
            "business_email_address",
            # a second address: fills the email only where the first is empty
            "email_home",
            "email_other",
            "email_2",
            "personal_email",
            "secondary_email",
        ],
        "email",
    ),
    **dict.fromkeys(
        ["firstname", "first", "given_name", "forename", "your_first_name"], "first_name"
    ),
    **dict.fromkeys(["lastname", "last", "surname", "family_name", "your_last_name"], "last_name"),
    # split into first and last name when the file has neither (leadflow.models)
    **dict.fromkeys(["name", "full_name", "fullname", "contact_name", "lead_name"], "full_name"),
    **dict.fromkeys(
        [
            "company_name",
            "organization",
            "organisation",
            "organization_name",  # Pipedrive: "Organization - Name"
            "organisation_name",
            "account_name",  # Salesforce
            "company_account",  # Salesforce reports: "Company / Account"
            "company_organization",
            "account",
            "employer",
        ],
        "company",
    ),
    **dict.fromkeys(
        [
            "job_title",
            "jobtitle",
            "position",
            "role",
            "job_role",
            "designation",  # Zoho CRM, and common in India and the Gulf
            "job_position",
            "title_position",
        ],
        "title",
    ),
    **dict.fromkeys(
        [
            "country_region",  # HubSpot, LinkedIn lead gen forms: "Country/Region"
            "country_code",
            "country_name",
            "cc",  # Mailchimp's audience export
            "nation",
            "mailing_country",
            "billing_country",
            "ip_country",
        ],
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
            "employee_range",  # ZoomInfo
            "employee_size",
            "employees_range",
            "company_headcount",
            "organization_size",
            "organisation_size",
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
            "created_time",  # Zoho CRM, Meta lead ads: "created_time"
            "created_on",
            "submitted_on",
            "submission_date",
            "date_submitted",
            "lead_submission_date",
            "date_added",
            "optin_time",  # Mailchimp: when the contact opted in
            "add_time",  # Pipedrive: "Person - Add time"
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

# Question-style headers (form tools: `What is your email address?`, `What's your first
# name?`): the field a question is about when it mentions it. Only a question counts
# (a `?` or a `your`), so `Email Status` or `Email Opt Out` stay their own columns.
_KEYWORDS = {
    "email": "email",
    "e_mail": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "surname": "last_name",
    "full_name": "full_name",
    "company_name": "company",
    "company": "company",
    "job_title": "title",
    "country": "country",
}


def normalise(header: str) -> str:
    """`E-mail Address ` -> `e_mail_address`; `What's your email?` -> `what_s_your_email`."""
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")


class ColumnError(ValueError):
    """No column of the file can be the lead's email."""


@dataclass
class ColumnMap:
    """What each column of one file becomes. `keys` holds, column by column, the key
    its value is stored under (a sheet's rows are read by position, so two columns
    with the same header stay two columns); `renames` maps a header to its key, for
    records that arrive as objects (JSON). The lists are for the run's report."""

    renames: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)  # already a lead field or rule name
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (header, field)
    ignored: list[str] = field(default_factory=list)  # neither: kept as attributes
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (header, field)
    unnamed: list[int] = field(default_factory=list)  # columns (1-based) with no header

    def apply(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record with its keys renamed; a later duplicate column never overwrites
        the first column that mapped to a field."""
        out: dict[str, object] = {}
        for key, value in record.items():
            name = self.renames.get(key, key)
            if name not in out:
                out[name] = value
        return out

    def apply_row(self, cells: Sequence[object]) -> dict[str, object]:
        """A sheet's row as a record: the first column with a key wins, and a later
        one with the same key fills it when the first is empty (`Email` twice, or
        `Email` beside `Work Email`)."""
        out: dict[str, object] = {}
        for key, value in zip(self.keys, cells, strict=False):
            if _empty(out.get(key)):
                out[key] = value
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
                "columns second to another (fill it only where it is empty): "
                + ", ".join(f"{header} (a second {to})" for header, to in self.duplicates)
            )
        if self.ignored:
            lines.append(
                "columns ignored (no lead field or scoring rule reads them; map one with "
                "LEADFLOW_COLUMNS): " + ", ".join(self.ignored)
            )
        if self.unnamed:
            lines.append(
                "columns without a header (kept as column_N): "
                + ", ".join(str(number) for number in self.unnamed)
            )
        return "\n".join(lines)


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def names_email(headers: Iterable[str], custom: Mapping[str, str] | None = None) -> bool:
    """Whether one of `headers` can be the lead's email: how a sheet's header row is
    told from the title and filter rows above it (leadflow.tables)."""
    custom_by_name = {normalise(k): v for k, v in (custom or {}).items()}
    return any(_target(h, custom_by_name, set())[0] == "email" for h in headers if h.strip())


def map_columns(
    headers: Iterable[str],
    *,
    custom: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
    origin: str = "",
) -> ColumnMap:
    """Decide what every column becomes. `custom` maps a header (as written, or
    normalised) to a lead field or attribute name; `rule_attributes` are the names
    the scoring rules read. Raises ColumnError when nothing maps to email."""
    custom_by_name = {normalise(k): v for k, v in (custom or {}).items()}
    wanted = set(rule_attributes)
    taken: set[str] = set()
    result = ColumnMap()
    headers = [h.strip() if isinstance(h, str) else "" for h in headers]
    result.keys = [""] * len(headers)
    # Exact lead-field names first, so `email` wins over a `Work Email` beside it.
    order = sorted(range(len(headers)), key=lambda i: headers[i] not in LEAD_FIELDS)
    for index in order:
        header = headers[index]
        if not header:
            result.keys[index] = f"column_{index + 1}"
            result.unnamed.append(index + 1)
            continue
        target, how = _target(header, custom_by_name, wanted)
        if target is None:
            result.keys[index] = header
            if header not in result.ignored:
                result.ignored.append(header)
        elif target in taken:
            result.keys[index] = target
            result.duplicates.append((header, target))
        else:
            taken.add(target)
            result.keys[index] = target
            if how == "same":
                result.used.append(target)
            else:
                result.mapped.append((header, target))
        result.renames.setdefault(header, result.keys[index])
    # Report in the file's column order.
    position: dict[str, int] = {}
    for index, header in enumerate(headers):
        position.setdefault(header, index)
    first_of = {key: index for index, key in reversed(list(enumerate(result.keys)))}
    result.ignored.sort(key=lambda header: position[header])
    result.duplicates.sort(key=lambda item: position[item[0]])
    result.mapped.sort(key=lambda item: position[item[0]])
    result.used.sort(key=lambda name: first_of[name])
    result.unnamed.sort()
    if "email" not in taken:
        shown = ", ".join(repr(h) for h in headers if h) or "none"
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
    if stripped.endswith("?") or "_your_" in words:
        for keyword, target in _KEYWORDS.items():
            if f"_{keyword}_" in words:
                return target, "keyword"
    return None, "none"
