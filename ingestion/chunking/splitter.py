"""Language-aware splitting on top of LangChain's recursive splitter.

Spans are an exact partition of the document: concatenated in ordinal order they give back the text,
so "read the document whole" and "read these passages" see the same bytes, and character offsets map
to 1-based line numbers for citations.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from corral.ingestion.parsing import FileKind

_LANGCHAIN_LANGUAGES = {lang.value for lang in Language}
# A definition line in most C-family and scripting languages; good enough to label a span until the
# tree-sitter chunker lands.
_SYMBOL = re.compile(
    r"^[ \t]*(?:export\s+)?(?:async\s+)?(?:pub\s+)?"
    r"(?:def|class|function|func|fn|interface|struct|enum|trait|impl|module)\s+([A-Za-z_][\w.]*)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Span:
    ordinal: int
    char_start: int
    char_end: int
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str
    symbol: str | None


@lru_cache(maxsize=64)
def _splitter(language: str | None, chunk_chars: int) -> RecursiveCharacterTextSplitter:
    # No overlap and no stripping: the pieces must concatenate back to the exact document.
    if language in _LANGCHAIN_LANGUAGES:
        return RecursiveCharacterTextSplitter.from_language(
            Language(language), keep_separator="start", chunk_size=chunk_chars, chunk_overlap=0,
            strip_whitespace=False,
        )
    return RecursiveCharacterTextSplitter(
        keep_separator="end", chunk_size=chunk_chars, chunk_overlap=0, strip_whitespace=False
    )


def split_document(text: str, kind: FileKind, chunk_chars: int) -> list[Span]:
    """Split ``text`` into spans of about ``chunk_chars`` characters along its natural boundaries."""
    language = kind.language if kind.kind in ("code", "markdown") else None
    pieces = _splitter(language, chunk_chars).split_text(text)
    if "".join(pieces) != text:  # the splitter dropped something: fall back to plain slices
        pieces = [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    spans: list[Span] = []
    offset = 0
    for piece in pieces:
        if not piece:
            continue
        start, end = offset, offset + len(piece)
        offset = end
        if not piece.strip() and spans:
            # Whitespace-only tail: fold it into the previous span so no span is empty of content.
            prev = spans[-1]
            spans[-1] = Span(prev.ordinal, prev.char_start, end, prev.start_line,
                             prev.end_line, prev.text + piece, prev.symbol)
            continue
        first = len(piece) - len(piece.lstrip())
        last = len(piece.rstrip())
        start_line = bisect.bisect_right(line_starts, start + first)
        end_line = bisect.bisect_right(line_starts, start + max(last - 1, 0))
        match = _SYMBOL.search(piece) if kind.kind == "code" else None
        spans.append(Span(len(spans), start, end, start_line, end_line, piece,
                          match.group(1) if match else None))
    return spans
