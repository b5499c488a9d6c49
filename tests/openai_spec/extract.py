"""Extract the schemas the gateway must conform to from OpenAI's published OpenAPI spec.

Run by hand when the spec moves, never by the tests (they read the fixture only):

    git clone https://github.com/openai/openai-openapi /tmp/openai-openapi
    python -m tests.openai_spec.extract /tmp/openai-openapi/openapi.json --commit <sha>

The spec (MIT licence, Copyright (c) OpenAI) is ~2 MB; the fixture keeps only the
response schemas the gateway returns and everything they reference, under the same
`#/components/schemas/...` paths, so its `$ref`s resolve unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).with_name("schemas.json")
SOURCE = "https://github.com/openai/openai-openapi (openapi.json)"
LICENCE = "MIT License, Copyright (c) OpenAI; see the LICENSE file of the source repository"
REF_PREFIX = "#/components/schemas/"

# What the gateway returns, by the spec's names.
ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    "Response",
    "ResponseStreamEvent",
)


def referenced(schemas: dict[str, Any], roots: tuple[str, ...]) -> set[str]:
    """The roots and every schema reachable from them through `$ref`."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_refs_in(schemas[name]))
    return seen


def _refs_in(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                found.append(ref.removeprefix(REF_PREFIX))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def extract(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    keep = referenced(schemas, ROOTS)
    return {
        "source": SOURCE,
        "commit": commit,
        "licence": LICENCE,
        "openapi": spec["openapi"],
        "roots": list(ROOTS),
        "components": {"schemas": {name: schemas[name] for name in sorted(keep)}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="openapi.json of openai/openai-openapi")
    parser.add_argument("--commit", required=True, help="the source commit, recorded in the fixture")
    args = parser.parse_args()
    fixture = extract(json.loads(args.spec.read_text()), args.commit)
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"{len(fixture['components']['schemas'])} schemas -> {FIXTURE}")


if __name__ == "__main__":
    main()
