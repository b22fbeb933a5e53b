"""Read-only access to one corpus, the service every agent tool is built over.

Confinement: documents are addressed by their corpus-relative ``path`` *as stored in the database*
and read from the chunks there, never from the filesystem, so ``../../etc/passwd`` or an absolute path
is simply "no such document". Every answer is bounded (lines, characters, matches) and every regular
expression runs under a timeout (the ``regex`` module), so hostile arguments cost milliseconds.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import regex
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral.core.db import Chunk, Document, DocumentStatus
from corral.core.errors import InvalidInputError, NotFoundError

__all__ = ["CorpusReader", "DocInfo", "Line", "SymbolInfo"]

MAX_SPAN_LINES = 400
MAX_READ_CHARS = 48_000
MAX_PATTERN_CHARS = 256
MAX_MATCHES = 200
MAX_LINE_CHARS = 2000  # longer lines are cut before matching and in output
REGEX_TIMEOUT_S = 0.05  # per line: catastrophic backtracking stops here, not after minutes
GREP_DEADLINE_S = 3.0  # per call: a slow-but-legal pattern over a big corpus returns what it found
_DEF = re.compile(r"^[ \t]*(?:export\s+)?(?:async\s+)?(?:pub\s+)?"
                  r"(def|class|function|func|fn|interface|struct|enum|trait|impl)\s+([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class DocInfo:
    path: str
    kind: str
    lines: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Line:
    path: str
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    path: str
    name: str
    kind: str
    start_line: int
    end_line: int


def _check_lines(start: int, end: int) -> None:
    if start < 1 or end < start:
        raise InvalidInputError(f"bad line range {start}-{end}: lines are 1-based and start <= end")


class CorpusReader:
    """The read-only tools' service over one corpus; safe to share between tool calls of one run."""

    def __init__(self, session_factory: sessionmaker[Session], corpus_id: int, *, cache_docs: int = 32):
        self._sf = session_factory
        self.corpus_id = corpus_id
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._cache_docs = cache_docs

    # documents -------------------------------------------------------------------------------

    def list_documents(self, glob: str | None = None, limit: int = 200) -> list[DocInfo]:
        """Indexed documents in path order, optionally filtered by a shell glob (``*.py``, ``docs/*``)."""
        if glob is not None and len(glob) > MAX_PATTERN_CHARS:
            raise InvalidInputError(f"the glob is longer than {MAX_PATTERN_CHARS} characters")
        limit = max(1, min(limit, 1000))
        with self._sf() as s:
            rows = s.execute(
                select(Document.path, Document.kind, Document.line_count, Document.token_count)
                .where(Document.corpus_id == self.corpus_id, Document.status == DocumentStatus.INDEXED)
                .order_by(Document.path)
            ).all()
        out = [DocInfo(*r) for r in rows if glob is None or fnmatch.fnmatchcase(r[0], glob)]
        return out[:limit]

    def _lines(self, path: str) -> list[str]:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if not path or len(path) > 2048 or "\x00" in path:
            raise InvalidInputError("a document path is 1-2048 characters without NUL")
        with self._sf() as s:
            doc_id = s.scalar(select(Document.id).where(
                Document.corpus_id == self.corpus_id, Document.path == path,
                Document.status == DocumentStatus.INDEXED))
            if doc_id is None:
                raise NotFoundError(f"no document {path[:200]!r} in this corpus (list_documents shows "
                                    "the paths)")
            text = "".join(s.scalars(select(Chunk.text).where(Chunk.document_id == doc_id)
                                     .order_by(Chunk.ordinal)))
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self._cache[path] = lines
        if len(self._cache) > self._cache_docs:
            self._cache.popitem(last=False)
        return lines

    def read_span(self, path: str, start_line: int, end_line: int) -> list[Line]:
        """Lines ``start_line..end_line`` (1-based, inclusive), at most 400; cut at the document's end."""
        _check_lines(start_line, end_line)
        if end_line - start_line + 1 > MAX_SPAN_LINES:
            raise InvalidInputError(f"at most {MAX_SPAN_LINES} lines per read; ask for a smaller span")
        lines = self._lines(path)
        if start_line > len(lines):
            raise InvalidInputError(f"{path} has {len(lines)} lines; line {start_line} does not exist")
        return [Line(path, n, lines[n - 1][:MAX_LINE_CHARS])
                for n in range(start_line, min(end_line, len(lines)) + 1)]

    def span_text(self, path: str, start_line: int, end_line: int) -> str:
        """The raw text of lines ``start_line..end_line`` (uncut lines, each ending in a newline): what
        a read returns to its caller as the artifact behind the line-numbered text the model reads."""
        _check_lines(start_line, end_line)
        return "".join(line + "\n" for line in self._lines(path)[start_line - 1 : end_line])

    def read_document(self, path: str) -> tuple[list[Line], bool]:
        """The document's lines up to ~48,000 characters; the flag says whether it was cut short."""
        out: list[Line] = []
        used = 0
        for n, line in enumerate(self._lines(path), start=1):
            used += min(len(line), MAX_LINE_CHARS) + 1
            if used > MAX_READ_CHARS:
                return out, True
            out.append(Line(path, n, line[:MAX_LINE_CHARS]))
        return out, False

    # search ----------------------------------------------------------------------------------

    def grep(self, pattern: str, glob: str | None = None, max_matches: int = 50,
             ignore_case: bool = False) -> tuple[list[Line], bool]:
        """Lines matching ``pattern`` (a regular expression) in path order; the flag says truncated.

        A pattern that does not compile, or that backtracks past the per-line timeout, is an
        :class:`InvalidInputError` naming the problem.
        """
        if not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInputError(f"the pattern must be 1-{MAX_PATTERN_CHARS} characters")
        try:
            rx = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
        except (regex.error, ValueError, OverflowError) as exc:
            raise InvalidInputError(f"invalid regular expression {pattern[:80]!r}: {exc}") from exc
        max_matches = max(1, min(max_matches, MAX_MATCHES))
        out: list[Line] = []
        deadline = time.monotonic() + GREP_DEADLINE_S
        for doc in self.list_documents(glob, limit=1000):
            if time.monotonic() > deadline:
                return out, True
            for n, line in enumerate(self._lines(doc.path), start=1):
                probe = line[:MAX_LINE_CHARS]
                try:
                    hit = rx.search(probe, timeout=REGEX_TIMEOUT_S)
                except TimeoutError as exc:
                    raise InvalidInputError(
                        f"the pattern {pattern[:80]!r} is too slow (catastrophic backtracking); "
                        "simplify it") from exc
                if hit:
                    out.append(Line(doc.path, n, probe))
                    if len(out) >= max_matches:
                        return out, True
        return out, False

    def outline(self, path: str) -> list[SymbolInfo]:
        """Definitions in a document: the chunker's symbols where it recorded them, else def/class lines."""
        lines = self._lines(path)
        with self._sf() as s:
            rows = s.execute(
                select(Chunk.symbol, Chunk.symbol_kind, Chunk.unit_start_line, Chunk.unit_end_line,
                       Chunk.start_line, Chunk.end_line)
                .join(Document).where(Document.corpus_id == self.corpus_id, Document.path == path,
                                      Chunk.symbol.is_not(None))
                .order_by(Chunk.ordinal)
            ).all()
        found: dict[str, SymbolInfo] = {}
        for sym, kind, us, ue, cs, ce in rows:
            if sym and sym not in found:
                found[sym] = SymbolInfo(path, sym, kind or "symbol", us or cs, ue or ce)
        for n, line in enumerate(lines, start=1):
            m = _DEF.match(line[:MAX_LINE_CHARS])
            if m and m.group(2) not in found:
                found[m.group(2)] = SymbolInfo(path, m.group(2), m.group(1), n, n)
        return sorted(found.values(), key=lambda x: x.start_line)

    def find_symbol(self, name: str, limit: int = 20) -> list[SymbolInfo]:
        """Where ``name`` (a function, class or method; ``Class.method`` allowed) is defined."""
        if not re.fullmatch(r"[A-Za-z_][\w.]{0,199}", name or ""):
            raise InvalidInputError(f"{name[:80]!r} is not a symbol name (letters, digits, _ and .)")
        short = name.rsplit(".", 1)[-1]
        with self._sf() as s:
            rows = s.execute(
                select(Document.path, Chunk.symbol, Chunk.symbol_kind, Chunk.unit_start_line,
                       Chunk.unit_end_line, Chunk.start_line, Chunk.end_line)
                .join(Document).where(Document.corpus_id == self.corpus_id,
                                      (Chunk.symbol == name) | Chunk.symbol.like(f"%.{short}"))
                .order_by(Document.path, Chunk.ordinal).limit(limit)
            ).all()
        out = [SymbolInfo(p, sym or name, kind or "symbol", us or cs, ue or ce)
               for p, sym, kind, us, ue, cs, ce in rows]
        if out:
            return out
        # No chunker symbols (or not this one): fall back to definition lines.
        hits, _ = self.grep(rf"^\s*(?:async\s+)?(?:def|class|function|func|fn)\s+{re.escape(short)}\b",
                            max_matches=limit)
        return [SymbolInfo(h.path, short, "definition", h.number, h.number) for h in hits]

    def references(self, name: str, limit: int = 50) -> tuple[list[Line], bool]:
        """Lines that mention ``name`` as a word outside its own definitions (callers, imports, uses)."""
        if not re.fullmatch(r"[A-Za-z_]\w{0,199}", name or ""):
            raise InvalidInputError(f"{name[:80]!r} is not an identifier")
        hits, more = self.grep(rf"\b{name}\b", max_matches=MAX_MATCHES)
        defs = re.compile(rf"^\s*(?:async\s+)?(?:def|class|function|func|fn)\s+{name}\b")
        uses = [h for h in hits if not defs.match(h.text)]
        return uses[:limit], more or len(uses) > limit
