"""Talking to upstream providers: neutral types, adapters, quirks, SSE, errors, prices.

Imports nothing else of ours: it is the bottom layer.
"""
