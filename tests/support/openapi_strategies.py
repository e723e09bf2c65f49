"""Hypothesis strategies for the JSON a vendor's OpenAPI description allows.

hypothesis-jsonschema would do this, but its last release (0.23.1) fails with the
hypothesis we use (`'many' object has no attribute 'more'`); the OpenAPI 3.0 schemas
we test against use only the small subset below (object, array, string with
date-time or uuid formats, integer, boolean, enum, $ref), so a few lines cover them.
Tests validate what is drawn with jsonschema, which keeps this generator honest.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hypothesis import strategies as st


def from_openapi(name: str, schemas: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the component schema `name` of `schemas`."""

    def build(node: dict[str, Any]) -> st.SearchStrategy[Any]:
        if "$ref" in node:
            target = node["$ref"].rsplit("/", 1)[1]
            return st.deferred(lambda: build(schemas[target]))
        if "enum" in node:
            return st.sampled_from(node["enum"])
        kind = node.get("type")
        if kind == "object":
            fields = node.get("properties") or {}
            extra = node.get("additionalProperties")
            if not fields and isinstance(extra, dict):
                return st.dictionaries(st.text(max_size=20), build(extra), max_size=5)
            required = set(node.get("required") or ())
            return st.fixed_dictionaries(
                {k: build(v) for k, v in fields.items() if k in required},
                optional={k: build(v) for k, v in fields.items() if k not in required},
            )
        if kind == "array":
            return st.lists(build(node.get("items") or {}), max_size=4)
        if kind == "string":
            if node.get("format") == "date-time":
                return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
            if node.get("format") == "uuid":
                return st.uuids().map(str)
            return st.text(max_size=30)
        if kind == "integer":
            return st.integers(-(2**31), 2**31 - 1)
        if kind == "boolean":
            return st.booleans()
        return st.none()

    return build(schemas[name])
