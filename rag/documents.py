"""Reading documents to ingest: Markdown, plain text, HTML and code files.

A file that is binary (a NUL byte, or not UTF-8) or unreadable is a `DocumentError`
for that file alone; the caller reports it and goes on with the rest. Markdown may
start with a small front-matter block (`---`, `title: …`, `url: …`, `author: …`,
`---`) whose fields override the defaults (title from the first heading or the file
name, url the file's `file://` URI).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from rag.errors import DocumentError

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm"}
CODE_SUFFIXES = {
    ".py", ".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".c", ".h", ".cpp", ".hpp", ".rb",
    ".sh", ".sql", ".kt", ".swift", ".scala", ".cs", ".php",
}  # fmt: skip
KINDS = ("article", "post", "code")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_FIRST_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)


@dataclass(slots=True)
class Document:
    source: str
    text: str
    title: str
    url: str
    kind: str = "article"
    author: str = ""

    @property
    def content_hash(self) -> str:
        """Everything that ends up in the chunks: a change to any of it re-ingests the document."""
        parts = (self.text, self.title, self.url, self.kind, self.author)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "section", "article"):
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    parser = _TextOfHtml()
    parser.feed(html)
    text = re.sub(r"\n\s*\n\s*", "\n\n", "".join(parser.parts))
    return re.sub(r"[ \t]+", " ", text).strip(), parser.title


def kind_for(path: Path) -> str:
    return "code" if path.suffix.lower() in CODE_SUFFIXES else "article"


def decode(raw: bytes, source: str) -> str:
    if b"\x00" in raw[:8192]:
        raise DocumentError(source, "binary file (it holds NUL bytes); only text, Markdown, HTML and code")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(source, "not UTF-8 text; only text, Markdown, HTML and code") from None


def make_document(
    source: str, text: str, *, kind: str | None = None, author: str = "", title: str = "", url: str = ""
) -> Document:
    """A document from text already in hand (the admin API, tests), with the same defaults as files."""
    suffix = Path(source).suffix.lower()
    if suffix in (".html", ".htm"):
        text, html_title = html_to_text(text)
        title = title or html_title
    meta: dict[str, str] = {}
    front = _FRONT_MATTER.match(text)
    if front:
        for line in front.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip()
        text = text[front.end() :]
    heading = _FIRST_HEADING.search(text)
    return Document(
        source=source,
        text=text,
        title=title or meta.get("title") or (heading.group(1).strip() if heading else Path(source).stem),
        url=url or meta.get("url") or (Path(source).resolve().as_uri() if source.startswith("/") else source),
        kind=kind or meta.get("type") or kind_for(Path(source)),
        author=author or meta.get("author", ""),
    )


def read_document(
    path: Path, kind: str | None = None, author: str = "", source: str | None = None
) -> Document:
    """A file as a document; `source` (default: its absolute path) is the id re-ingests match on."""
    source = source or str(path.resolve())
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(source, f"cannot read: {exc.strerror or exc}") from None
    return make_document(source, decode(raw, source), kind=kind, author=author)


def expand_paths(paths: list[Path]) -> Iterator[Path]:
    """Files as given, and the text and code files under each directory (sorted, hidden ones skipped)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and child.suffix.lower() in TEXT_SUFFIXES | CODE_SUFFIXES:
                    yield child
        else:
            yield path
