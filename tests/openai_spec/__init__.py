"""OpenAI's published response schemas, for conformance tests.

`schemas.json` is extracted from the `openai/openai-openapi` repository (MIT) by
`extract.py`, which records the source commit. OpenAPI 3.1 schemas are JSON Schema
2020-12, so they validate directly, except for five leftovers of OpenAPI 3.0's
`nullable: true`, which JSON Schema ignores: the loader widens those to admit null
(the fixture stays a faithful extract). `$ref`s keep the spec's own paths and resolve
against the fixture as one resource.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FIXTURE = Path(__file__).with_name("schemas.json")
ROOT_URI = "urn:openai-openapi"


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(FIXTURE.read_text())
    _admit_null_where_nullable(spec)
    return spec


def _admit_null_where_nullable(node: Any) -> None:
    if isinstance(node, dict):
        if node.pop("nullable", False) is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        for value in node.values():
            _admit_null_where_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _admit_null_where_nullable(value)


@cache
def _validator(name: str) -> Draft202012Validator:
    spec = _spec()
    if name not in spec["components"]["schemas"]:
        raise KeyError(f"{name} is not in the fixture; add it to extract.ROOTS and re-extract")
    registry: Registry[Any] = Registry().with_resource(
        ROOT_URI, Resource(contents=spec, specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{ROOT_URI}#/components/schemas/{name}"}, registry=registry)


def source_commit() -> str:
    return str(_spec()["commit"])


def conforms(instance: Any, name: str) -> None:
    """Raise AssertionError listing every way `instance` breaks the spec's schema `name`."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        detail = "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:10]
        )
        raise AssertionError(f"not a valid {name} (openai-openapi {source_commit()[:10]}):\n{detail}")


def conforms_event(event: dict[str, Any], union: str = "ResponseStreamEvent") -> None:
    """Validate a typed stream event against the member of `union` its `type` names.

    The spec's unions discriminate on `type`; picking the member first turns "not valid
    under any of the given schemas" into the field that is actually wrong.
    """
    members = [m["$ref"].rsplit("/", 1)[-1] for m in _spec()["components"]["schemas"][union]["anyOf"]]
    for member in members:
        type_schema = _spec()["components"]["schemas"][member].get("properties", {}).get("type", {})
        if event.get("type") in (type_schema.get("enum") or [type_schema.get("const")]):
            conforms(event, member)
            return
    raise AssertionError(f"event type {event.get('type')!r} is not one of {union}'s members")
