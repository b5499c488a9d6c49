"""Configuration of retrieval: the `rag:` section, and a model's or request's `rag` object.

```yaml
rag:
  collections:
    - name: twin
      embedder: local            # or `gateway`: an embeddings model this gateway routes
      embedding_model: null      # with `embedder: gateway`, e.g. text-embedding
      on_error: fail             # or `continue`: answer without context when retrieval fails
      top_k: 4
      score_threshold: 0.2       # minimum cosine similarity to the question, in every mode
      hybrid: true               # BM25-style sparse search fused with the dense one
      sparse_weight: 0.5         # its vote in the fusion, against 1 for the dense list
      expand: {model: llama-3.1-8b, n: 2}   # rewrites by a cheap model, fused
      rerank: {model: llama-3.1-8b, candidates: 12}
      template: "… {context} …"  # where the context goes; {question} also works
      role: system               # or `user`: prefix the last user message
      seed: [docs/]              # ingested at start-up (relative to the config file)
models:
  - name: twin
    rag: {collection: twin}      # every request to this model is grounded
```

A request's `"rag": {"collection", "top_k", "score_threshold", "filter"}` is validated by
`RagRequest` (a 400 names the bad field) and layered over the model's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FilterValue = str | int | bool | list[str] | list[int]


def _default_template() -> str:
    """rag's template, imported only when a collection is configured (rag.augment loads numpy)."""
    from rag.augment import DEFAULT_TEMPLATE

    return DEFAULT_TEMPLATE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RagRequest(_Strict):
    """What a request (or a model's config) may say about retrieval."""

    collection: str | None = Field(None, min_length=1, max_length=200)
    top_k: int | None = Field(None, ge=1, le=50)
    score_threshold: float | None = Field(None, ge=-1, le=1)
    filter: dict[str, FilterValue] | None = None


class ExpandConfig(_Strict):
    model: str = Field(min_length=1)
    n: int = Field(2, ge=1, le=8)


class RerankConfig(_Strict):
    model: str = Field(min_length=1)
    candidates: int = Field(12, ge=2, le=50)


class CollectionConfig(_Strict):
    name: str = Field(min_length=1, max_length=200)
    embedder: Literal["local", "gateway"] = "local"
    embedding_model: str | None = None
    # With `embedder: local`: another ONNX model than the bundled MiniLM (and its tokenizer dir).
    model_path: Path | None = None
    tokenizer_path: Path | None = None
    dimensions: int = Field(384, gt=0)
    on_error: Literal["fail", "continue"] = "fail"
    top_k: int = Field(4, ge=1, le=50)
    score_threshold: float | None = Field(None, ge=-1, le=1)
    hybrid: bool = False
    # The sparse list's vote in the fusion against 1 for the dense one (bench.rag_quality).
    sparse_weight: float = Field(0.5, ge=0, le=4)
    expand: ExpandConfig | None = None
    rerank: RerankConfig | None = None
    template: str = Field(default_factory=_default_template)
    role: Literal["system", "user"] = "system"
    seed: list[Path] = Field(default_factory=list)
    seed_type: Literal["article", "post", "code"] | None = None
    seed_author: str = ""


class RagConfig(_Strict):
    collections: list[CollectionConfig] = Field(default_factory=list)
