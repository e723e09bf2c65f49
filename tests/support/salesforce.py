"""Salesforce as the contract tests see it: the org's address, the adapter built on a
mocked transport, a SOQL query's answer."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from leadflow.integrations.salesforce import SalesforceCRM, SalesforceSettings

SF = "https://acme.my.salesforce.com"


API = f"{SF}/services/data/v62.0"


def salesforce_crm(transport, **extra) -> SalesforceCRM:
    values = {"base_url": SF, "access_token": SecretStr("00Dold")} | extra
    return SalesforceCRM(SalesforceSettings(_env_file=None, **values), transport=transport)


def lead_query_reply(*records: dict) -> httpx.Response:
    """A SOQL query's answer holding these Lead records."""
    rows = [
        {"attributes": {"type": "Lead", "url": "/services/data/v62.0/sobjects/Lead/00Q1"}, **row}
        for row in records
    ]
    return httpx.Response(200, json={"totalSize": len(rows), "done": True, "records": rows})
