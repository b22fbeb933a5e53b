"""Backends: the agent over the embedded engine, remote servers that fail, settings that refuse."""

from __future__ import annotations

import pytest

from corral.core.config import Settings
from corral.core.db import Run, session_scope
from corral.core.errors import InvalidInputError, ModelError
from corral.platform.composition import answer
from tests.agents.conftest import LoadCorpus

FILES = {"kb/falcon.md": "# Falcon\n\nThe launch code for project Falcon is 7-alpha-9.\n"}


def test_the_agent_answers_within_its_budget_and_records_every_step(
    load_corpus: LoadCorpus, monkeypatch: pytest.MonkeyPatch, reset_caches: object
) -> None:
    load_corpus("kb", FILES)
    monkeypatch.setenv("CORRAL_AGENT_MAX_STEPS", "3")
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "32")
    reset_caches()  # type: ignore[operator]
    r = answer("kb", "What is the launch code for project Falcon?", agent=True)
    assert r.strategy == "agent" and r.forced and r.steps
    assert r.steps[0]["step"] == "model"
    with session_scope() as s:
        run = s.get_one(Run, r.run_id)
        assert run.strategy == "agent" and run.steps == r.steps and run.decision["tools"]
        assert run.answer == r.answer


def test_agent_and_strategy_are_exclusive(load_corpus: LoadCorpus) -> None:
    from corral.agents.routing import Strategy

    load_corpus("kb", FILES)
    with pytest.raises(InvalidInputError, match="either"):
        answer("kb", "q?", Strategy.STUFF, agent=True)


def test_an_unreachable_remote_backend_is_a_model_error_recorded_on_the_run(
    load_corpus: LoadCorpus, monkeypatch: pytest.MonkeyPatch, reset_caches: object
) -> None:
    load_corpus("kb", FILES)
    monkeypatch.setenv("CORRAL_CHAT_BACKEND", "openai")
    monkeypatch.setenv("CORRAL_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.setenv("CORRAL_OPENAI_MODEL", "llama-4-scout")
    monkeypatch.setenv("CORRAL_CHAT_CONTEXT_WINDOW", "131072")
    reset_caches()  # type: ignore[operator]
    from corral.platform import composition

    composition._remote_chat.cache_clear()
    try:
        with pytest.raises(ModelError, match="llama-4-scout failed"):
            answer("kb", "What is the launch code?")
    finally:
        composition._remote_chat.cache_clear()
    with session_scope() as s:
        run = s.query(Run).one()
        assert run.backend == "openai" and run.error and run.decision["inputs"]["window"] == 131072


def test_the_openai_backend_needs_its_url_model_and_window() -> None:
    with pytest.raises(ValueError, match="CORRAL_OPENAI_BASE_URL"):
        Settings(chat_backend="openai", openai_model="m")
    ok = Settings(chat_backend="openai", openai_base_url="http://x/v1", openai_model="m",
                  chat_context_window=4096)
    assert ok.chat_backend == "openai"
