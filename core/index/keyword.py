"""The keyword (BM25-style) index, kept in the SQL database next to the chunk rows it indexes.

Why SQL and not a separate index (e.g. bm25s files per corpus): the full-text index is maintained
by the database itself, in the same transaction that writes or deletes ``chunk`` rows, so it can
never disagree with SQL — a crashed worker leaves both or neither — and every API and worker process
of a server deployment shares it with no file locking or reload protocol. Chroma is written before
that transaction commits, with deterministic ids, so re-running a task repairs any gap there.

* **SQLite** (embedded mode): a contentless FTS5 table ``chunk_fts`` over ``corral_nfkc(chunk.text)``
  (keyed by the chunk's rowid) kept in step by triggers; ranked by FTS5's built-in ``bm25()``.
* **PostgreSQL** (server mode): a GIN index on ``to_tsvector('simple', normalize(text, NFKC))`` over
  ``chunk``; ranked by ``ts_rank_cd`` (cover density: term frequency and proximity, normalised by
  length).

Both sides of a match are folded to Unicode NFKC — the indexed text (in the database) and the query
(:func:`fold`) — so full-width letters, ligatures (``\ufb01le``) and their plain spellings find each
other; and a term keeps its combining marks (``B\u0305``, a ``B`` with a combining overline, is a
term, not a lone ``B`` too short to search for). Created by migration 0002, folded by 0005.

Because the index follows the ``chunk`` table, ``upsert`` and ``delete`` have nothing to do: they
exist so that the pipeline addresses every index the same way and an index kept outside SQL could be
dropped in without changing callers.

Queries are never passed to the database's query syntax: they are split into word terms (letters and
digits with their marks; underscore splits), deduplicated and capped, and each term is quoted, so
``"``, ``*``, ``NEAR``, ``:`` or ``&`` are plain text, an empty query finds nothing, and a huge one
costs a bounded amount.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Protocol

import regex
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from corral.core.db.session import get_engine
from corral.core.errors import ServiceUnavailableError
from corral.core.index.store import Hit, IndexedChunk

__all__ = [
    "MAX_QUERY_TERMS",
    "TERM",
    "KeywordIndex",
    "SqlKeywordIndex",
    "fold",
    "get_keyword_index",
    "include_in_autogenerate",
    "query_terms",
]

MAX_QUERY_TERMS = 64
_MAX_TERM_CHARS = 64
_MAX_K = 1000
# Letters and digits in any script with the marks that combine with them (Python's \w leaves marks
# out, so "B̅" would lose its overline and a Devanagari word its vowel signs); underscore and
# punctuation split terms, as FTS5's default tokenizer does.
TERM = regex.compile(r"[\p{L}\p{N}][\p{L}\p{N}\p{M}]*")


def fold(text: str) -> str:
    """``text`` in Unicode NFKC: the form the keyword index holds chunk text in."""
    return unicodedata.normalize("NFKC", text)


class KeywordIndex(Protocol):
    """Lexical search over a corpus's chunks. Same ids as the vector store; ``score`` higher is better."""

    def upsert(self, corpus_id: int, chunks: Sequence[IndexedChunk]) -> None: ...

    def delete(self, corpus_id: int, chunk_ids: Sequence[str]) -> None: ...

    def search(self, corpus_id: int, query: str, k: int) -> list[Hit]: ...

    def drop(self, corpus_id: int) -> None: ...


def include_in_autogenerate(obj: object, name: str | None, type_: str, reflected: bool,
                            compare_to: object) -> bool:
    """Alembic ``include_object`` hook: the keyword index's tables and index are not in the models."""
    return not (name is not None and (name == "chunk_fts" or name.startswith("chunk_fts_")
                                      or name == "ix_chunk_fts"))


def query_terms(query: str) -> list[str]:
    """The distinct lower-cased word terms of ``query`` (folded to NFKC) in order, at most
    :data:`MAX_QUERY_TERMS`.

    Only the first 64 KiB of the query are looked at: nothing longer is a search.
    """
    seen: dict[str, None] = {}
    for match in TERM.finditer(fold(query[: 64 * 1024])):
        term = match.group().lower()[:_MAX_TERM_CHARS]
        seen.setdefault(term, None)
        if len(seen) >= MAX_QUERY_TERMS:
            break
    return list(seen)


_SQLITE_SEARCH = text("""
    SELECT c.id, -bm25(chunk_fts) AS score, c.text, d.path, c.ordinal, c.start_line, c.end_line,
           d.kind, c.symbol
    FROM chunk_fts
    JOIN chunk AS c ON c.rowid = chunk_fts.rowid
    JOIN document AS d ON d.id = c.document_id
    WHERE chunk_fts MATCH :match AND d.corpus_id = :corpus_id
    ORDER BY bm25(chunk_fts)
    LIMIT :k
""")

_PG_SEARCH = text("""
    SELECT c.id, ts_rank_cd(to_tsvector('simple', normalize(c.text, NFKC)), q.query) AS score, c.text,
           d.path, c.ordinal, c.start_line, c.end_line, d.kind, c.symbol
    FROM chunk AS c
    JOIN document AS d ON d.id = c.document_id,
         (SELECT to_tsquery('simple', :match) AS query) AS q
    WHERE d.corpus_id = :corpus_id AND to_tsvector('simple', normalize(c.text, NFKC)) @@ q.query
    ORDER BY score DESC, c.id
    LIMIT :k
""")


class SqlKeywordIndex:
    """:class:`KeywordIndex` over the database's own full-text search (FTS5 or tsvector)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert(self, corpus_id: int, chunks: Sequence[IndexedChunk]) -> None:
        """Nothing to do: the index follows the ``chunk`` rows in their own transaction."""

    def delete(self, corpus_id: int, chunk_ids: Sequence[str]) -> None:
        """Nothing to do: deleting ``chunk`` rows removes them from the index in the same transaction."""

    def drop(self, corpus_id: int) -> None:
        """Nothing to do: deleting a corpus cascades to its chunks and so out of the index."""

    def search(self, corpus_id: int, query: str, k: int) -> list[Hit]:
        terms = query_terms(query)
        k = max(0, min(int(k), _MAX_K))
        if not terms or k == 0:
            return []
        if self._engine.dialect.name == "postgresql":
            # Each term quoted as one lexeme; '|' = any of them, like a BM25 bag of words.
            statement, match = _PG_SEARCH, " | ".join(f"'{t}'" for t in terms)
        else:
            statement, match = _SQLITE_SEARCH, " OR ".join(f'"{t}"' for t in terms)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(statement, {"match": match, "corpus_id": corpus_id, "k": k}).all()
        except OperationalError as exc:
            raise ServiceUnavailableError(f"keyword search unavailable: {exc.orig}") from exc
        except ProgrammingError as exc:  # the index is missing: the schema is not migrated
            raise ServiceUnavailableError(
                f"keyword index missing (run `corral db upgrade`): {exc.orig}"
            ) from exc
        return [
            Hit(
                chunk_id=row.id,
                score=float(row.score),
                text=row.text,
                metadata={
                    "path": row.path, "ordinal": row.ordinal, "start_line": row.start_line,
                    "end_line": row.end_line, "kind": row.kind,
                    **({"symbol": row.symbol} if row.symbol else {}),
                },
            )
            for row in rows
        ]


def get_keyword_index() -> KeywordIndex:
    """The keyword index of the configured database."""
    return SqlKeywordIndex(get_engine())
