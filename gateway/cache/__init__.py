"""The response cache: exact and semantic, namespaced per virtual key.

It sits after auth and the key's limits and before RAG (see DESIGN.md):

- `config`: the `cache:` section and a model's or request's `cache` object;
- `keys`: normalisation, the parameters that change an answer, namespaces;
- `policy`: whether a request is cached, read, written, and where;
- `exact`: the exact-match stores (Redis, or an in-process LRU bounded in bytes);
- `semantic`: the last user turn, embedded, searched in Qdrant under a hard context filter;
- `replay`: what is stored, and a hit sent back as JSON or a normal SSE stream;
- `service`: the step the chat pipeline calls, and failure handling;
- `metrics`: lookups and failures for `/metrics`.
"""
