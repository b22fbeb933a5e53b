"""The keyword index: finds chunks by their words, follows the chunk rows in their transaction, and
takes any query — hostile, empty or huge — without a syntax error."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core.db import Chunk, Corpus, Document, DocumentStatus, get_engine, migrate, session_scope
from corral.core.db.session import dispose_engines
from corral.core.index import SqlKeywordIndex, get_keyword_index
from corral.core.index.keyword import MAX_QUERY_TERMS, query_terms
from corral.core.services import get_or_create_corpus

HOSTILE = ['"', '""', "'", "*", "NEAR(a b)", "a AND", "OR", "-", "(", ")", "^", "col:term", "a:b",
           "&", "|", "!", "<->", "\\", "'; DROP TABLE chunk; --", "\x00", "🙂", "   ", ""]


def _add_doc(corpus_id: int, path: str, texts: list[str]) -> list[str]:
    with session_scope() as s:
        doc = Document(corpus_id=corpus_id, path=path, kind="text", content_hash=path, size_bytes=1,
                       status=DocumentStatus.INDEXED)
        doc.chunks = [
            Chunk(id=f"{path}-{i}", ordinal=i, start_line=i + 1, end_line=i + 1, char_start=0,
                  char_end=len(t), text=t, content_hash=f"{path}{i}")
            for i, t in enumerate(texts)
        ]
        s.add(doc)
        return [c.id for c in doc.chunks]


def _corpus(name: str) -> int:
    with session_scope() as s:
        return get_or_create_corpus(s, name).id


def _exercise() -> None:
    index = get_keyword_index()
    a, b = _corpus("alpha"), _corpus("beta")
    _add_doc(a, "a/retry.py", ["def retry_with_backoff(attempts):\n    sleep(2 ** attempts)\n",
                               "The watchdog requeues stale jobs.\n"])
    _add_doc(a, "a/readme.md", ["Backoff doubles the delay after each failed attempt, backoff!\n"])
    _add_doc(b, "b/other.md", ["backoff in another corpus\n"])

    hits = index.search(a, "backoff", 10)
    assert [h.metadata["path"] for h in hits] == ["a/readme.md", "a/retry.py"]  # tf ranks first
    assert hits[0].score >= hits[1].score > 0
    assert hits[0].metadata["ordinal"] == 0 and hits[0].text.startswith("Backoff doubles")
    # Terms are ORed, case-folded, and underscores split identifiers like the index does.
    assert {h.chunk_id for h in index.search(a, "WATCHDOG zebra", 10)} == {"a/retry.py-1"}
    assert index.search(a, "retry_with_backoff", 1)[0].chunk_id == "a/retry.py-0"
    assert index.search(b, "backoff", 10)[0].metadata["path"] == "b/other.md"
    assert index.search(a, "backoff", 0) == [] and index.search(a, "backoff", -5) == []
    assert index.search(999_999, "backoff", 5) == []

    for q in HOSTILE:
        assert isinstance(index.search(a, q, 5), list)
    assert index.search(a, "backoff" + ' "OR* NEAR(' * 100_000, 5)  # huge, still answers
    assert index.search(a, "", 5) == []

    # Deleting chunk rows removes them from the index in the same transaction.
    with session_scope() as s:
        s.execute(sa.delete(Chunk).where(Chunk.id == "a/readme.md-0"))
    assert [h.chunk_id for h in index.search(a, "backoff", 10)] == ["a/retry.py-0"]
    # And a rolled-back transaction leaves the index as it was.
    with pytest.raises(RuntimeError), session_scope() as s:
        s.execute(sa.delete(Chunk).where(Chunk.id == "a/retry.py-0"))
        raise RuntimeError("abort")
    assert [h.chunk_id for h in index.search(a, "backoff", 10)] == ["a/retry.py-0"]
    # Dropping a corpus cascades out of the index.
    with session_scope() as s:
        s.delete(s.get_one(Corpus, a))
    assert index.search(a, "backoff", 10) == []
    assert isinstance(index, SqlKeywordIndex)
    index.drop(a)


def test_keyword_index_on_sqlite(corral_env: Path) -> None:
    migrate.ensure_schema()
    assert get_engine().dialect.name == "sqlite"
    _exercise()


@pytest.mark.services
def test_keyword_index_on_postgresql(
    corral_env: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, reset_caches: object
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    from corral.core.config import get_settings

    get_settings.cache_clear()
    migrate.upgrade()
    assert get_engine().dialect.name == "postgresql"
    try:
        _exercise()
    finally:
        dispose_engines()


def test_query_terms_are_bounded_and_plain() -> None:
    assert query_terms('Foo "bar" foo* NEAR(baz)') == ["foo", "bar", "near", "baz"]
    assert query_terms("get_settings()") == ["get", "settings"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(10_000)))) == MAX_QUERY_TERMS
    assert all(len(t) <= 64 for t in query_terms("x" * 100_000))
    assert query_terms("!!! ::: ***") == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=200))
def test_any_query_is_answered_without_error(corral_env: Path, query: str) -> None:
    migrate.ensure_schema()
    index = get_keyword_index()
    corpus_id = _corpus("fuzz")
    assert isinstance(index.search(corpus_id, query, 3), list)
