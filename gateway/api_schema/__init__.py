"""The OpenAPI description of the gateway's HTTP API, and the `/docs` page that renders it.

The served handlers take the raw request (the hot path parses and validates its own
bodies, see `gateway.request_body`), so FastAPI never sees their signatures. The API is
described here instead, by typed stubs that are never called (`operations`) over small
pydantic models (`common`, `v1`, `admin`), and FastAPI's own generator turns them into
`/openapi.json`. `tests/test_openapi.py` checks that the description and the served
routes name the same paths and methods, so neither can drift alone.
"""
