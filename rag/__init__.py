"""Retrieval-augmented generation: embedders, the Qdrant store, ingestion, retrieval and prompt augmentation.

May import `providers` (for embeddings) and nothing else of ours.
"""
