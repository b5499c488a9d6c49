"""Choosing and ordering deployments, and running the attempts.

May import `providers` and nothing else of ours (never `gateway`).
"""
