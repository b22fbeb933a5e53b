"""Hybrid retrieval: RRF fusion, dense-only degradation, order-preserving passages, expansion."""

from __future__ import annotations

from corral.agents.retrieval import (
    HybridSearcher,
    corpus_parts,
    order_preserving,
    reciprocal_rank_fusion,
    scoped_documents,
    whole_corpus,
)
from corral.core.db import get_sessionmaker
from corral.core.index import get_vector_store
from corral.core.services import get_corpus
from corral.ingestion.embedding import get_embedder
from corral.platform.composition import get_searcher
from tests.agents.conftest import LoadCorpus


def test_rrf_rewards_agreement_and_is_deterministic() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    assert [k for k, _ in fused] == ["a", "c", "b", "d"]
    assert reciprocal_rank_fusion([[], []]) == []
    assert [k for k, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]  # ties: first seen


def files() -> dict[str, str]:
    para = "Filler about the weather and the sea, repeated to make the file long enough.\n\n"
    big = para * 12 + "The harbour master's cat is called Biscuit.\n\n" + para * 12
    return {"c/a_big.txt": big, "c/b_small.txt": "Biscuit likes sardines.\n", "c/c_other.txt": para * 3}


def test_passages_come_in_document_order_and_small_files_are_read_whole(load_corpus: LoadCorpus) -> None:
    load_corpus("c", files(), max_chars=300)
    sf = get_sessionmaker()
    with sf() as s:
        cid = get_corpus(s, "c").id
        ranked = get_searcher().search(s, cid, "What is the harbour master's cat called?", 4)
        assert ranked and any("Biscuit" in r.chunk.text for r in ranked)
        plain = order_preserving(ranked, 10_000)
        assert [p.path for p in plain] == sorted(p.path for p in plain)  # path order, not score order
        assert [p.number for p in plain] == list(range(1, len(plain) + 1))
        widened = order_preserving(ranked, 10_000, expand_limit=64)
        small = [p for p in widened if p.path == "c/b_small.txt"]
        assert all(p.text == "Biscuit likes sardines.\n" for p in small)  # whole file: cheap
        assert order_preserving(ranked, 20) == []  # nothing fits a tiny budget
        scoped = scoped_documents(ranked, 100_000)
        assert {p.path for p in scoped} == {r.chunk.document.path for r in ranked}
        every = whole_corpus(s, cid)
        assert [p.path for p in every] == ["c/a_big.txt", "c/b_small.txt", "c/c_other.txt"]
        parts = corpus_parts(s, cid, 200)
        assert len(parts) > 2 and "".join(p.text for part in parts for p in part) == \
            "".join(p.text for p in every)  # the parts partition the corpus, in order
        numbers = [p.number for part in parts for p in part]
        assert numbers == list(range(1, len(numbers) + 1))


def test_search_degrades_to_dense_only_without_a_keyword_index(load_corpus: LoadCorpus) -> None:
    load_corpus("c", files(), max_chars=300)
    searcher = HybridSearcher(get_vector_store(), get_embedder(), None)
    with get_sessionmaker()() as s:
        cid = get_corpus(s, "c").id
        ranked = searcher.search(s, cid, "cat name", 3)
        assert not searcher.hybrid and len(ranked) == 3
        assert all(r.keyword_rank is None and r.dense is not None for r in ranked)
        assert searcher.search(s, cid, "   ", 3) == [] and searcher.search(s, cid, "cat", 0) == []
