"""``ask`` end to end through the platform: the tiny random model on the embedded engine, real
all-MiniLM embeddings, Chroma and the keyword index, settings from the environment, the CLI.

The agents' routing, escalation, budgets and citations are tested fast with a scripted model in
``tests/agents``; these few runs check that the real pieces fit together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from corral.agents.ask import Strategy
from corral.agents.retrieval import HybridSearcher
from corral.core.config import Settings
from corral.core.db import Run, get_sessionmaker, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.errors import InvalidInputError, ModelError, NotFoundError
from corral.core.services import get_corpus
from corral.platform import composition
from corral.platform.cli.app import app
from corral.platform.composition import answer, get_chat_model, ingest_in_process
from tests.agents.scripted import write_documents

LoadCorpus = Callable[..., str]

HANDBOOK = {
    "handbook/shipping.md": "# Shipping\n\nParcels leave the warehouse on Tuesdays.\n",
    "handbook/returns.md": "# Returns\n\nReturns are accepted within 30 days.\n",
}
FALCON = {"kb/falcon.md": "# Falcon\n\nThe launch code for project Falcon is 7-alpha-9.\n"}
runner = CliRunner()


def write_corpus(name: str, files: Mapping[str, str], *, max_chars: int = 400) -> str:
    """Index ``files`` into the configured Corral: SQL rows (token counts from the chat model's
    tokenizer), real all-MiniLM embeddings into Chroma."""
    from corral.core.index import IndexedChunk, get_vector_store
    from corral.ingestion.embedding import get_embedder
    from corral.ingestion.tokens import get_token_counter

    ensure_schema()
    counter = get_token_counter()
    with get_sessionmaker().begin() as s:
        chunks = write_documents(s, name, files, lambda text: counter.count([text])[0], max_chars=max_chars)
        if chunks:
            vectors = get_embedder().embed_documents([c.text for c, _ in chunks])
            get_vector_store().upsert(chunks[0][0].document.corpus_id, [
                IndexedChunk(c.id, c.text, v, {"path": path})
                for (c, path), v in zip(chunks, vectors, strict=True)])
    return name


@pytest.fixture
def load_corpus(corral_env: Path) -> LoadCorpus:
    return write_corpus


def test_search_degrades_to_dense_only_without_a_keyword_index(load_corpus: LoadCorpus) -> None:
    from corral.core.index import get_vector_store
    from corral.ingestion.embedding import get_embedder

    para = "Filler about the weather and the sea, repeated to make the file long enough.\n\n"
    big = para * 12 + "The harbour master's cat is called Biscuit.\n\n" + para * 12
    load_corpus("c", {"c/a_big.txt": big, "c/b_small.txt": "Biscuit likes sardines.\n",
                      "c/c_other.txt": para * 3}, max_chars=300)
    searcher = HybridSearcher(get_vector_store(), get_embedder(), None)
    with get_sessionmaker()() as s:
        cid = get_corpus(s, "c").id
        ranked = searcher.search(s, cid, "cat name", 3)
        assert not searcher.hybrid and len(ranked) == 3 and any("Biscuit" in r.chunk.text for r in ranked)
        assert all(r.keyword_rank is None and r.dense is not None for r in ranked)
        assert searcher.search(s, cid, "   ", 3) == [] and searcher.search(s, cid, "cat", 0) == []


def test_a_refused_question_loads_no_model(load_corpus: LoadCorpus) -> None:
    load_corpus("handbook", HANDBOOK)
    with pytest.raises(InvalidInputError, match="empty"):
        answer("handbook", "  ")
    with pytest.raises(NotFoundError, match="known corpora: handbook"):
        answer("nope", "anything?")
    assert not get_chat_model.loaded


def test_a_corpus_that_fits_is_stuffed_read_with_tools_and_cited(load_corpus: LoadCorpus) -> None:
    load_corpus("handbook", HANDBOOK)
    result = answer("handbook", "When do parcels leave the warehouse?")
    assert result.strategy == "stuff" and result.prompt_tokens > result.estimated_tokens > 0
    assert result.citations and all(c.verified for c in result.citations if not c.cited_by_model)
    with session_scope() as s:
        run = s.get_one(Run, result.run_id)
        assert [step["step"] for step in run.steps][:6] == ["route", "search", "read", "tool", "tool",
                                                             "generate"]
        assert run.backend == "embedded" and run.model == get_chat_model().model_id


def test_a_corpus_over_the_window_is_routed_and_the_needle_cited(load_corpus: LoadCorpus) -> None:
    files = {f"big/topic{i:02d}.txt": "\n".join(f"Line {j} of topic {i}: the quarterly figures for region "
                                                  f"{i} rose." for j in range(30)) + "\n" for i in range(8)}
    load_corpus("big", {**files, "big/zz_needle.txt": "The launch code for project Falcon is 7-alpha-9.\n"})
    window = get_chat_model().context_window
    routed = answer("big", "What is the launch code for project Falcon?")
    assert routed.routed_strategy in ("scoped-stuff", "retrieve")
    assert f"{window}-token window" in routed.reason and "exceeds" in routed.reason
    forced = answer("big", "What is the launch code for project Falcon?", strategy=Strategy.RETRIEVE)
    assert "big/zz_needle.txt:1-1" in [c.label for c in forced.citations]
    # Each model call's prompt fits the window (a run may make two: the answer, then "which sources?").
    assert all(s["prompt_tokens"] < window for s in forced.steps if s["step"] == "generate")


def test_an_engine_failure_is_recorded_on_the_run(load_corpus: LoadCorpus,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.inference.errors import InferenceError

    load_corpus("handbook", HANDBOOK)

    def broken(*_a: object, **_k: object) -> None:
        raise InferenceError("the model fell over")

    monkeypatch.setattr(get_chat_model(), "generate", broken)
    with pytest.raises(ModelError, match="fell over"):
        answer("handbook", "When do parcels leave?")
    with session_scope() as s:
        run = s.scalars(select(Run)).one()
        assert run.error == "the model fell over" and run.answer is None and run.steps[0]["step"] == "route"


def test_the_engines_prefix_cache_decides_whether_the_prefix_is_cached(load_corpus: LoadCorpus) -> None:
    topics = ["harbour tides", "orchard pruning", "bell founding", "glass blowing", "rope making",
              "cheese caves"]
    files = {f"guide/{i}.md": f"# {t.title()}\n\n" + " ".join(
        f"Note {j} on {t}: the guild of {t} keeps its ledger number {i * 10 + j} in hall {j}."
        for j in range(9)) + "\n" for i, t in enumerate(topics)}
    files["guide/3.md"] += "The bell founders cast the great tenor bell from melted cannons.\n"
    load_corpus("guide", files)
    assert getattr(get_chat_model(), "prefix_cache", None) is not None  # the tiny model runs on the engine
    q1 = "What were the bell founders' tenor bell cast from?"
    cold = answer("guide", q1)
    # Asked, not declared: nothing of the stuffed prompt is cached yet, so little is read.
    assert cold.decision["inputs"]["prefix_cached_tokens"] == 0
    assert cold.routed_strategy in ("scoped-stuff", "retrieve")
    answer("guide", q1, strategy=Strategy.STUFF)  # prefills the corpus prefix into the cache
    warm = answer("guide", "Which hall keeps the rope makers' ledger?")
    inputs = warm.decision["inputs"]
    assert inputs["prefix_cached"] is True and inputs["prefix_cached_tokens"] > 0.8 * warm.estimated_tokens
    assert warm.routed_strategy == "stuff" and "prefix cache" in warm.reason


def test_the_agent_answers_within_its_budget_and_records_every_step(
    load_corpus: LoadCorpus, monkeypatch: pytest.MonkeyPatch, reset_caches: object
) -> None:
    load_corpus("kb", FALCON)
    monkeypatch.setenv("CORRAL_AGENT_MAX_STEPS", "3")
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "32")
    reset_caches()  # type: ignore[operator]
    r = answer("kb", "What is the launch code for project Falcon?", agent=True)
    assert r.strategy == "agent" and r.forced and r.steps and r.steps[0]["step"] == "model"
    with session_scope() as s:
        run = s.get_one(Run, r.run_id)
        assert run.strategy == "agent" and run.steps == r.steps and run.decision["tools"]
        assert run.answer == r.answer
    with pytest.raises(InvalidInputError, match="either"):
        answer("kb", "q?", Strategy.STUFF, agent=True)


def test_an_unreachable_remote_backend_is_a_model_error_recorded_on_the_run(
    load_corpus: LoadCorpus, monkeypatch: pytest.MonkeyPatch, reset_caches: object
) -> None:
    load_corpus("kb", FALCON)
    monkeypatch.setenv("CORRAL_CHAT_BACKEND", "openai")
    monkeypatch.setenv("CORRAL_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.setenv("CORRAL_OPENAI_MODEL", "llama-4-scout")
    monkeypatch.setenv("CORRAL_CHAT_CONTEXT_WINDOW", "131072")
    reset_caches()  # type: ignore[operator]
    composition._remote_chat.cache_clear()
    try:
        with pytest.raises(ModelError, match="llama-4-scout failed"):
            answer("kb", "What is the launch code?")
    finally:
        composition._remote_chat.cache_clear()
    with session_scope() as s:
        run = s.scalars(select(Run)).one()
        assert run.backend == "openai" and run.model == "llama-4-scout" and run.error
        assert run.decision["inputs"]["window"] == 131072
    assert not get_chat_model.loaded  # the remote backend loads no local model


def test_the_openai_backend_needs_its_url_model_and_window() -> None:
    with pytest.raises(ValueError, match="CORRAL_OPENAI_BASE_URL"):
        Settings(chat_backend="openai", openai_model="m")
    ok = Settings(chat_backend="openai", openai_base_url="http://x/v1", openai_model="m",
                  chat_context_window=4096)
    assert ok.chat_backend == "openai"


def test_cli_ask_shows_strategy_estimates_steps_and_labelled_sources(load_corpus: LoadCorpus) -> None:
    load_corpus("handbook", HANDBOOK)
    r = runner.invoke(app, ["ask", "When do parcels leave?", "-c", "handbook", "--strategy", "scoped-stuff",
                            "--verbose"])
    assert r.exit_code == 0, r.output
    assert "Strategy: scoped-stuff" in r.output and "forced by the request" in r.output
    assert "map-reduce:" in r.output and "step route:" in r.output and "step verify:" in r.output
    # The tiny random model cites nothing: every source is only "read", never shown as verified.
    assert "Support: unsupported" in r.output and "[read]" in r.output and "[cited" not in r.output
    j = runner.invoke(app, ["ask", "When do parcels leave?", "-c", "handbook", "--json"])
    body = json.loads(j.output)
    assert body["decision"]["estimates"] and body["citations"][0]["verified"] is True
    assert body["support"] == "unsupported" and {c["support"] for c in body["citations"]} == {"read"}
    bad = runner.invoke(app, ["ask", "q?", "-c", "handbook", "--strategy", "telepathy"])
    assert bad.exit_code == 2 and "telepathy" in bad.output
    empty = runner.invoke(app, ["ask", "  ", "-c", "handbook"])
    assert empty.exit_code == 2 and "empty" in empty.output


def test_cli_eval_reports_recall_and_tokens_per_strategy(corral_env: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["eval", "--workdir", str(tmp_path / "w"), "--documents", "6", "--needles", "2",
                            "--code-tasks", "2", "--code-package", "json", "--window", "2048", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output[r.output.index("{"):])
    rows = {(x["kind"], x["strategy"]) for x in body["docs"]["2048"]}
    assert {("needle", "router"), ("needle", "stuff"), ("aggregate", "map-reduce")} <= rows
    assert {x["strategy"] for x in body["code"]["2048"]} == {"stuff", "retrieve", "scoped-stuff",
                                                               "map-reduce", "router"}
    # Stored for the dashboard's evaluation plot: one batch, a result per suite and window.
    from corral.core.db import session_scope
    from corral.core.services import get_or_create_workspace
    from corral.core.services.evals import latest_eval

    with session_scope() as session:
        found = latest_eval(session, get_or_create_workspace(session).id)
        stored = {(e.suite, e.window): e.rows for e in found}
    assert stored == {("docs", 2048): body["docs"]["2048"], ("code", 2048): body["code"]["2048"]}
    bad = runner.invoke(app, ["eval", "--code-package", "../../etc", "--window", "4096"])
    assert bad.exit_code == 2 and "not standard-library" in bad.output


def test_eval_answers_scores_the_models_answers_to_gold_questions(corral_env: Path) -> None:
    """``corral eval --answers``: the demo's questions asked through the one ask path and scored (the
    tiny random model answers nonsense: the run must still score every answer, never crash)."""
    from corral.core.db.migrate import ensure_schema
    from corral.platform.cli.commands.eval_cmd import _stdlib, answer_scores

    ensure_schema()
    ingest_in_process("stdlib", _stdlib() / "json")
    scores = answer_scores(["routed", "retrieve"], limit=2)
    assert [(s.strategy, s.task.kind) for s in scores] == [("routed", "needle")] * 2 + [
        ("retrieve", "needle")] * 2
    for s in scores:
        assert s.seconds > 0 and s.prompt_tokens > 0 and s.first_token_s is not None
        assert 0 <= s.first_token_s <= s.seconds
        assert s.support in ("supported", "partly-supported", "unsupported", "not-found")
    bad = runner.invoke(app, ["eval", "--answers", "--answer-strategy", "telepathy"])
    assert bad.exit_code == 2 and "telepathy" in bad.output


def test_a_weight_format_the_cpu_cannot_run_is_refused_not_fallen_back_from(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_chat_model: Path
) -> None:
    """An operator who asks for packed bf16 on an AVX2-only host gets a configuration error naming the
    setting and what the CPU lacks, instead of a silent fall back to the slow reference backend."""
    from corral.core.errors import ConfigurationError
    from corral.inference.engine import cpu

    avx2_only = cpu.CpuFeatures("AVX2", frozenset({"avx", "avx2", "fma"}))
    monkeypatch.setattr(cpu, "cpu_features", lambda: avx2_only)
    monkeypatch.setenv("CORRAL_ENGINE_WEIGHTS", "bf16-packed")
    composition.get_settings.cache_clear()
    refused = r"CORRAL_ENGINE_WEIGHTS: .*cannot use bf16-packed .*avx512bw"
    with pytest.raises(ConfigurationError, match=refused):
        composition.load_text_engine(tiny_chat_model, None)
    monkeypatch.setenv("CORRAL_ENGINE_WEIGHTS", "auto")
    composition.get_settings.cache_clear()
    engine = composition.load_text_engine(tiny_chat_model, None)
    assert getattr(engine, "weights", None) == "bf16"
