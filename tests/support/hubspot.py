"""HubSpot as the contract tests see it: the API's address, a token, HubSpot's OpenAPI
description (stored in tests/contract/specs/) and validation against its schemas."""

from __future__ import annotations

import copy
import json

import jsonschema

from tests.support.paths import ROOT

API = "https://api.hubapi.com"


TOKEN = "pat-na1-11111111-2222"


# HubSpot's OpenAPI description, stored with the tests in tests/contract/specs/ (its
# source and date: the README there)
SPEC_PATH = ROOT / "tests" / "contract" / "specs" / "hubspot-crm-contacts-v3.json"


SPEC = json.loads(SPEC_PATH.read_text())


def _components() -> dict:
    """The spec's components, with one known error corrected: the spec types search
    `sorts` as strings, but HubSpot's search guide documents, and the API honours,
    objects `{"propertyName", "direction"}` (HubSpot/hubspot-api-ruby#257,
    HubSpot/hubspot-api-nodejs#559: generated clients sending strings lose the
    direction)."""
    components = copy.deepcopy(SPEC["components"])
    components["schemas"]["PublicObjectSearchRequest"]["properties"]["sorts"]["items"] = {
        "type": "object",
        "required": ["propertyName", "direction"],
        "properties": {
            "propertyName": {"type": "string"},
            "direction": {"enum": ["ASCENDING", "DESCENDING"]},
        },
        "additionalProperties": False,
    }
    return components


COMPONENTS = _components()


def validate(schema: str, instance: object) -> None:
    """Validate against a schema of the spec's components (OpenAPI 3.0 schemas are
    JSON Schema for what they use here)."""
    document = {"$ref": f"#/components/schemas/{schema}", "components": COMPONENTS}
    jsonschema.validate(instance, document)


SPEC_ERROR = {
    "message": "Invalid input (details will vary based on the error)",
    "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
    "category": "VALIDATION_ERROR",
}
