"""Cutting documents into chunks, by kind of document.

- `article`: split at Markdown headings, then packed paragraph by paragraph up to
  `max_chars`, each chunk starting with the tail of the one before (`overlap_chars`)
  so a sentence cut at a boundary is whole in one of them. Each chunk is titled with
  its section heading.
- `post`: whole (posts are short, and a post is one thought).
- `code`: Python by top-level function and class (`ast`), with the module's own
  docstring and imports as a first chunk; other languages by blank-line blocks.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    position: int
    section: str = ""


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _pack(paragraphs: list[str], max_chars: int, overlap_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        pieces = [paragraph[i : i + max_chars] for i in range(0, len(paragraph), max_chars)] or [paragraph]
        for piece in pieces:
            if current and len(current) + len(piece) + 2 > max_chars:
                chunks.append(current)
                tail = current[-overlap_chars:] if overlap_chars else ""
                # Start the overlap at a word boundary.
                tail = tail[tail.find(" ") + 1 :] if " " in tail else tail
                current = f"{tail}\n\n{piece}" if tail else piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) pairs; text before the first heading has an empty heading."""
    matches = list(_HEADING.finditer(text))
    if not matches:
        return [("", text)]
    sections = [("", text[: matches[0].start()])]
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections.append((match.group(2), text[match.end() : end]))
    return [(h, b) for h, b in sections if b.strip()]


def chunk_article(text: str, max_chars: int = 700, overlap_chars: int = 100) -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, body in _sections(text):
        for piece in _pack(_paragraphs(body), max_chars, overlap_chars):
            chunks.append(Chunk(f"{heading}\n\n{piece}" if heading else piece, len(chunks), heading))
    return chunks


def chunk_post(text: str) -> list[Chunk]:
    return [Chunk(text.strip(), 0)] if text.strip() else []


def _python_blocks(text: str) -> list[tuple[str, str]] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    lines = text.splitlines()
    blocks: list[tuple[str, str]] = []
    preamble: list[str] = []
    for node in tree.body:
        start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
        segment = "\n".join(lines[start : node.end_lineno])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            blocks.append((node.name, segment))
        else:
            preamble.append(segment)
    if preamble:
        blocks.insert(0, ("module", "\n".join(preamble)))
    return blocks


def chunk_code(text: str, filename: str = "", max_chars: int = 2000) -> list[Chunk]:
    blocks = _python_blocks(text) if filename.endswith(".py") else None
    if blocks is None:
        blocks = [("", b) for b in _pack(_paragraphs(text), max_chars, 0)]
    chunks: list[Chunk] = []
    for name, body in blocks:
        for i in range(0, len(body), max_chars):
            chunks.append(Chunk(body[i : i + max_chars], len(chunks), name))
    return chunks


def chunk(text: str, kind: str, filename: str = "") -> list[Chunk]:
    if kind == "post":
        return chunk_post(text)
    if kind == "code":
        return chunk_code(text, filename)
    return chunk_article(text)
