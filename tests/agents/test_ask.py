"""Asking: the route taken, the passages read, the citations given and the Run recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from corral.agents.ask import Strategy
from corral.core.db import Run, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.errors import ConflictError, InvalidInputError, ModelError, NotFoundError
from corral.platform.composition import answer, get_chat_model, ingest_in_process


@pytest.fixture
def small_corpus(corral_env: Path, tmp_path: Path) -> str:
    root = tmp_path / "handbook"
    root.mkdir()
    (root / "shipping.md").write_text("# Shipping\n\nParcels leave the warehouse on Tuesdays.\n")
    (root / "returns.md").write_text("# Returns\n\nReturns are accepted within 30 days.\n")
    ensure_schema()
    ingest_in_process("handbook", root)
    return "handbook"


@pytest.fixture
def large_corpus(corral_env: Path, tmp_path: Path) -> str:
    root = tmp_path / "big"
    root.mkdir()
    for i in range(12):
        line = f"of topic {i}: the quarterly figures for region {i} rose."
        body = "\n".join(f"Line {j} {line}" for j in range(40))
        (root / f"topic{i:02d}.txt").write_text(body + "\n")
    (root / "zz_needle.txt").write_text("The launch code for project Falcon is 7-alpha-9.\n")
    ensure_schema()
    ingest_in_process("big", root)
    return "big"


def test_a_corpus_that_fits_is_stuffed_whole_and_cited(small_corpus: str) -> None:
    result = answer(small_corpus, "When do parcels leave the warehouse?")
    assert result.strategy == "stuff"
    assert "fits" in result.reason
    # Both documents were read: the prompt holds the whole corpus.
    assert result.prompt_tokens > result.estimated_tokens > 0
    assert result.citations and result.citations[0].path == "handbook/shipping.md"
    assert result.citations[0].label.startswith("handbook/shipping.md:")
    with session_scope() as s:
        run = s.get_one(Run, result.run_id)
        assert run.strategy == "stuff" and run.answer == result.answer
        assert run.actual_tokens == result.prompt_tokens + result.completion_tokens
        assert [step["step"] for step in run.steps] == ["route", "search", "generate"]


def test_a_corpus_over_the_window_is_retrieved_in_document_order(large_corpus: str) -> None:
    window = get_chat_model().context_window
    result = answer(large_corpus, "What is the launch code for project Falcon?")
    assert result.strategy == "retrieve"
    assert f"{window}-token window" in result.reason
    assert result.prompt_tokens < window
    labels = [c.label for c in result.citations]
    assert "big/zz_needle.txt:1-1" in labels
    assert result.citations[0].score is not None


def test_forcing_retrieval_on_a_small_corpus(small_corpus: str) -> None:
    result = answer(small_corpus, "How long do I have to return an item?", strategy=None)
    forced = answer(small_corpus, "How long do I have to return an item?", strategy=Strategy.RETRIEVE)
    assert result.strategy == "stuff" and forced.strategy == "retrieve"
    assert forced.reason == "forced by the request"


@pytest.mark.parametrize("question", ["", "   \n"])
def test_empty_question_is_refused(small_corpus: str, question: str) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        answer(small_corpus, question)


def test_huge_question_is_refused(small_corpus: str) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        answer(small_corpus, "why? " * 5000)


def test_unknown_corpus_names_the_known_ones(small_corpus: str) -> None:
    with pytest.raises(NotFoundError, match="known corpora: handbook"):
        answer("nope", "anything?")


def test_corpus_with_no_documents_is_a_conflict(corral_env: Path, tmp_path: Path) -> None:
    ensure_schema()
    (tmp_path / "empty").mkdir()
    ingest_in_process("hollow", tmp_path / "empty")
    with pytest.raises(ConflictError, match="no indexed documents"):
        answer("hollow", "anything?")


def test_question_in_another_language_still_answers(small_corpus: str) -> None:
    result = answer(small_corpus, "¿Cuándo salen los paquetes del almacén?")
    assert result.strategy == "stuff" and result.citations


def test_model_failure_is_recorded_on_the_run(small_corpus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.inference.errors import InferenceError

    model = get_chat_model()

    def broken(*_a: object, **_k: object) -> None:
        raise InferenceError("the model fell over")

    monkeypatch.setattr(model, "chat", broken)
    with pytest.raises(ModelError, match="fell over"):
        answer(small_corpus, "When do parcels leave?")
    with session_scope() as s:
        run = s.scalars(select(Run).order_by(Run.created_at.desc())).first()
        assert run is not None and run.error == "the model fell over" and run.answer is None
