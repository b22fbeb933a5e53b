"""Corpora for agent tests.

Most agents tests run on ``scripted.Corpora`` (a throwaway SQLite database), ``ScriptedChat`` and
``WordSearcher``: no model, embedder, vector store or environment. The few end-to-end tests index
with ``load_corpus`` into the configured Corral (the tiny random model's tokenizer for counts, real
all-MiniLM embeddings into Chroma) and answer through ``platform.composition``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from corral.core.db import get_sessionmaker
from corral.core.db.migrate import ensure_schema
from tests.agents.scripted import Corpora, write_documents

LoadCorpus = Callable[..., str]


def write_corpus(name: str, files: Mapping[str, str], *, max_chars: int = 400) -> str:
    from corral.core.index import IndexedChunk, get_vector_store
    from corral.ingestion.embedding import get_embedder
    from corral.ingestion.tokens import get_token_counter

    ensure_schema()
    counter = get_token_counter()
    with get_sessionmaker().begin() as s:
        chunks = write_documents(s, name, files, lambda text: counter.count([text])[0], max_chars=max_chars)
        vectors = get_embedder().embed_documents([c.text for c, _ in chunks])
        records = [IndexedChunk(c.id, c.text, v, {"path": path}) for (c, path), v in zip(chunks, vectors,
                                                                                        strict=True)]
        corpus_id = chunks[0][0].document.corpus_id if chunks else None
        if corpus_id is not None:
            get_vector_store().upsert(corpus_id, records)
    return name


def read_tree(root: Path) -> dict[str, str]:
    return {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".txt", ".py", ".md")}


@pytest.fixture
def load_corpus(corral_env: Path) -> LoadCorpus:
    return write_corpus


@pytest.fixture
def corpora(tmp_path: Path) -> Corpora:
    return Corpora(tmp_path)
