"""The keyword index and the keyword query read words the same way: Unicode NFKC on both sides, and a
word keeps its combining marks. "Can B̅ Corp." once lost its "B̅" (a B with a combining overline
split into a one-letter word, dropped as too short), and a full-width or ligature spelling never met
its plain one."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corral.agents.retrieval import content_terms, keyword_query
from corral.core.db import Chunk, Document, DocumentStatus, get_engine, migrate, session_scope
from corral.core.db.session import dispose_engines
from corral.core.index import get_keyword_index
from corral.core.index.keyword import query_terms
from corral.core.services import get_or_create_corpus
from tests.agents.prose import COMBINING_COMPANY, FULL_WIDTH_NAME, LIGATURE_PLACE, short_prose

OVERLINED_B = "b\u0305"


def test_the_query_keeps_combining_marks_and_folds_full_width_letters_and_ligatures() -> None:
    assert keyword_query(f"Where did Can {COMBINING_COMPANY} keep its ledgers?") == \
        f"{OVERLINED_B} corp keep ledgers"
    assert OVERLINED_B in content_terms(f"Can {COMBINING_COMPANY}")
    assert keyword_query(f"Who is {FULL_WIDTH_NAME}?") == "kai okafor"  # full-width letters
    assert keyword_query(f"When did the boat to {LIGATURE_PLACE} leave?") == "boat office tides leave"
    assert keyword_query("Which \ufb01le holds the \ufb02ag?") == "file holds flag"  # fi, fl ligatures
    assert keyword_query("Zoe\u0308 or Zoë?") == "zoë"  # decomposed and precomposed are one word
    assert keyword_query("हिन्दी पाठ") == "हिन्दी पाठ"  # vowel signs are marks: the words stay whole
    full_width_corp = "\uff23\uff2f\uff32\uff30"
    assert query_terms(f"Can {COMBINING_COMPANY} {full_width_corp}") == ["can", OVERLINED_B, "corp"]
    assert query_terms("\u0305\u0305 ***") == []  # marks alone are no word


def _chunks(corpus_id: int, path: str, texts: list[str]) -> None:
    with session_scope() as s:
        doc = Document(corpus_id=corpus_id, path=path, kind="text", content_hash=path, size_bytes=1,
                       status=DocumentStatus.INDEXED)
        doc.chunks = [Chunk(id=f"{path}-{i}", ordinal=i, start_line=i + 1, end_line=i + 1, char_start=0,
                            char_end=len(t), text=t, content_hash=f"{path}{i}") for i, t in enumerate(texts)]
        s.add(doc)


def _exercise(tmp_path: Path) -> None:
    prose = short_prose(tmp_path / "novels")
    with session_scope() as s:
        cid = get_or_create_corpus(s, "novels").id
    # Paragraphs of the novels, one chunk each, with the planted B̅ Corp. sentence among them.
    planted = prose.sentence(COMBINING_COMPANY)
    paragraphs = [p for n in prose.novels for p in n.text.split("\n\n") if len(p) > 200 and planted not in p]
    _chunks(cid, "novels/paragraphs.md", [*paragraphs[:40], "The bakery on B Street sold corn bread.",
                                          planted])
    _chunks(cid, "novels/names.md", [f"The letter was signed by {FULL_WIDTH_NAME}.",
                                     f"Tickets to {LIGATURE_PLACE} cost a shilling.",
                                     "The \ufb01le was kept in a drawer."])
    index = get_keyword_index()

    def top(question: str) -> str:
        hits = index.search(cid, keyword_query(question), 3)
        return hits[0].text if hits else ""

    def found(query: str) -> set[str]:
        return {h.chunk_id for h in index.search(cid, query, 50)}

    assert top(f"Where did Can {COMBINING_COMPANY} keep its spare ledgers?") == planted
    assert "novels/names.md-0" in found(keyword_query("Kai Okafor"))  # plain query, full-width text
    assert "novels/names.md-1" in found(keyword_query("the Office of Tides"))  # plain query, ligature text
    assert found(keyword_query("file")) == found(keyword_query("\ufb01le")) == {"novels/names.md-2"}
    # Deleting and updating chunk rows still keeps the folded index in step.
    with session_scope() as s:
        s.execute(sa.update(Chunk).where(Chunk.id == "novels/names.md-2")
                  .values(text="The dossier was kept in a drawer."))
    assert "novels/names.md-2" not in found("file") and "novels/names.md-2" in found("dossier")
    assert "novels/names.md-1" in found("office")
    with session_scope() as s:
        s.execute(sa.delete(Chunk).where(Chunk.id == "novels/names.md-1"))
    assert "novels/names.md-1" not in found("office tickets")


def test_the_sqlite_keyword_index_holds_folded_text(corral_env: Path, tmp_path: Path) -> None:
    migrate.ensure_schema()
    assert get_engine().dialect.name == "sqlite"
    _exercise(tmp_path)


@pytest.mark.services
def test_the_postgresql_keyword_index_holds_folded_text(
    corral_env: Path, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    from corral.core.config import get_settings

    get_settings.cache_clear()
    migrate.upgrade()
    assert get_engine().dialect.name == "postgresql"
    try:
        _exercise(tmp_path)
    finally:
        dispose_engines()


def test_chunks_indexed_before_the_upgrade_are_folded_by_it(corral_env: Path) -> None:
    migrate.upgrade(revision="0004")
    # Rows written as that release wrote them: today's models have columns its schema lacks.
    with get_engine().begin() as conn:
        wid = conn.execute(sa.text("INSERT INTO workspace (name) VALUES ('default') RETURNING id")).scalar()
        cid = conn.execute(sa.text(
            "INSERT INTO corpus (workspace_id, name, token_count, document_count) "
            "VALUES (:w, 'old', 0, 1) RETURNING id"), {"w": wid}).scalar()
        did = conn.execute(sa.text(
            "INSERT INTO document (corpus_id, path, kind, content_hash, size_bytes, line_count, "
            "token_count, status) VALUES (:c, 'old/notes.md', 'text', 'h', 1, 2, 0, 'indexed') "
            "RETURNING id"), {"c": cid}).scalar()
        for i, text in enumerate(["The \ufb01le was kept in a drawer.", "Nothing else."]):
            conn.execute(sa.text(
                "INSERT INTO chunk (id, document_id, ordinal, start_line, end_line, char_start, "
                "char_end, content_hash, token_count, text) VALUES (:id, :d, :o, :o + 1, :o + 1, 0, "
                ":n, :h, 0, :t)"), {"id": f"old/notes.md-{i}", "d": did, "o": i, "n": len(text),
                                     "h": f"h{i}", "t": text})
    assert isinstance(cid, int)
    migrate.upgrade()
    assert [h.chunk_id for h in get_keyword_index().search(cid, keyword_query("the file"), 5)] == \
        ["old/notes.md-0"]
