"""Corpora for agent tests, written straight into the real database and vector store.

Agent tests should not fail because a parser elsewhere is half-built, so ``load_corpus`` indexes
files itself: documents and chunks (paragraph slices that partition the text, as the chunker's do)
into SQL, real all-MiniLM embeddings into Chroma, token counts from the chat model's tokenizer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from corral.core.db import Chunk, Corpus, Document, DocumentStatus, get_sessionmaker
from corral.core.db.migrate import ensure_schema

LoadCorpus = Callable[..., str]


def _slices(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Character spans that partition ``text``, cut after blank lines, each at most ~max_chars."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            cut = text.rfind("\n\n", start + 1, end)
            end = cut + 2 if cut > start else (text.rfind("\n", start + 1, end) + 1 or end)
        spans.append((start, end))
        start = end
    return spans


def write_corpus(name: str, files: Mapping[str, str], *, max_chars: int = 400) -> str:
    from corral.core.index import IndexedChunk, get_vector_store
    from corral.core.services import get_or_create_corpus
    from corral.ingestion.embedding import get_embedder
    from corral.ingestion.tokens import get_token_counter

    ensure_schema()
    counter = get_token_counter()
    embedder = get_embedder()
    store = get_vector_store()
    sf = get_sessionmaker()
    with sf.begin() as s:
        corpus = get_or_create_corpus(s, name)
        records: list[IndexedChunk] = []
        for path, text in sorted(files.items()):
            h = hashlib.sha256(text.encode()).hexdigest()
            doc = Document(corpus_id=corpus.id, path=path, kind="code" if path.endswith(".py") else "text",
                           content_hash=h, size_bytes=len(text.encode()),
                           line_count=text.count("\n") + (not text.endswith("\n")),
                           token_count=counter.count([text])[0], status=DocumentStatus.INDEXED)
            spans = _slices(text, max_chars)
            pieces = [text[a:b] for a, b in spans]
            tokens = counter.count(pieces)
            vectors = embedder.embed_documents(pieces)
            for i, ((a, b), piece) in enumerate(zip(spans, pieces, strict=True)):
                cid = hashlib.sha256(f"{name}:{path}:{h}:{i}".encode()).hexdigest()[:32]
                first = text.count("\n", 0, a) + 1
                doc.chunks.append(Chunk(
                    id=cid, ordinal=i, start_line=first, end_line=first + piece.rstrip("\n").count("\n"),
                    char_start=a, char_end=b, content_hash=hashlib.sha256(piece.encode()).hexdigest(),
                    token_count=tokens[i], text=piece,
                ))
                records.append(IndexedChunk(cid, piece, vectors[i], {"path": path}))
            s.add(doc)
        s.flush()
        store.upsert(corpus.id, records)
        docs = [d for d in s.get_one(Corpus, corpus.id).documents]
        corpus.document_count = len(docs)
        corpus.token_count = sum(d.token_count for d in docs)
    return name


def read_tree(root: Path) -> dict[str, str]:
    return {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".txt", ".py", ".md")}


@pytest.fixture
def load_corpus(corral_env: Path) -> LoadCorpus:
    return write_corpus
