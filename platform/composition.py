"""The composition root: builds the services once per process and wires them into each use case.

Everything here is lazy and cached per process, so importing the CLI or the API costs nothing and a
long-lived server loads each model once.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel

from corral.agents.ask import AskOptions, AskResult, ChatModel, Strategy, ask, ask_agent
from corral.agents.backends import EngineChatModel, LangChainChatModel, remote_chat_model
from corral.agents.executor import Budget
from corral.agents.retrieval import HybridSearcher, find_keyword_index
from corral.core.config import get_settings
from corral.core.db import get_sessionmaker
from corral.core.db.migrate import ensure_schema
from corral.core.errors import InvalidInputError, ModelError
from corral.core.index import get_vector_store
from corral.inference.engine import Engine, load_engine
from corral.inference.errors import InferenceError
from corral.inference.hf import HFChatModel
from corral.ingestion.embedding import get_embedder

# Ingestion's one entry, run in the calling thread; the name says where it runs.
from corral.ingestion.ingest import ingest_now as ingest_in_process

__all__ = [
    "answer", "ask_options", "get_agent_chat", "get_answer_model", "get_chat_model", "get_searcher",
    "ingest_in_process", "load_text_engine", "prepare",
]

log = logging.getLogger(__name__)

Backend = Literal["auto", "engine", "hf"]


def prepare() -> None:
    """Make the database usable: embedded mode migrates its own file, server mode checks it."""
    ensure_schema()


def load_text_engine(
    folder: Path, gguf_file: str | None, backend: Backend | None = None
) -> Engine | HFChatModel:
    """Load a chat model: the embedded engine (``engine``; ``auto`` falls back to transformers when the
    engine cannot load it) or the transformers reference (``hf``). Default: ``CORRAL_INFERENCE_BACKEND``.
    The engine keeps its prompt-prefix cache under the data dir, so a corpus prefilled once stays warm
    across processes."""
    settings = get_settings()
    backend = backend or settings.inference_backend
    if backend in ("auto", "engine"):
        try:
            return load_engine(folder, gguf_file, cache_dir=settings.cache_dir / "prefix",
                               context_window=settings.chat_context_window)
        except InferenceError as exc:
            if backend == "engine":
                raise ModelError(f"the embedded engine cannot load {folder}: {exc}") from exc
            log.warning("embedded engine unavailable (%s); using transformers", exc)
    try:
        return HFChatModel(folder, gguf_file, context_window=settings.chat_context_window)
    except InferenceError as exc:
        raise ModelError(str(exc)) from exc


@lru_cache(maxsize=1)
def get_chat_model() -> Engine | HFChatModel:
    """The embedded chat model ``ask`` and the agent use (loaded once per process)."""
    folder, gguf_file = get_settings().resolved_chat_model()
    return load_text_engine(folder, gguf_file)


@lru_cache(maxsize=1)
def _remote_chat() -> BaseChatModel:
    s = get_settings()
    assert s.openai_base_url and s.openai_model  # the settings validator requires both for openai
    key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
    return remote_chat_model(s.openai_base_url, s.openai_model, key, max_tokens=s.chat_max_new_tokens)


def get_answer_model() -> ChatModel:
    """The backend ``ask`` answers with: the embedded model, or an OpenAI-compatible server whose
    window is declared in ``CORRAL_CHAT_CONTEXT_WINDOW`` (tokens are counted with the local tokenizer,
    an estimate for a remote model with another vocabulary)."""
    s = get_settings()
    if s.chat_backend == "openai":
        from corral.ingestion.tokens import get_token_counter

        counter = get_token_counter()
        return LangChainChatModel(_remote_chat(), name=s.openai_model or "openai",
                                  context_window=s.chat_context_window or 8192,
                                  count_tokens=lambda text: counter.count([text])[0])
    return get_chat_model()


def get_agent_chat() -> BaseChatModel:
    """A LangChain chat model for the tool-calling agent (constrained tool calls when embedded)."""
    s = get_settings()
    if s.chat_backend == "openai":
        return _remote_chat()
    from corral.inference.chat import ChatService

    model = get_chat_model()
    return EngineChatModel(service=ChatService(model), max_tokens=s.chat_max_new_tokens,
                           model_name=model.name)


def get_searcher() -> HybridSearcher:
    """Dense + BM25 search; dense only until a keyword index exists in ``corral.core.index``."""
    return HybridSearcher(get_vector_store(), get_embedder(), find_keyword_index())


def ask_options() -> AskOptions:
    s = get_settings()
    return AskOptions(
        max_new_tokens=s.chat_max_new_tokens, top_k=s.retrieve_top_k,
        expand_limit=s.retrieve_expand_tokens, backend=s.chat_backend,
        cost_per_1k_input=s.backend_cost_per_1k_input,
        cost_per_1k_cached_input=s.backend_cost_per_1k_cached_input,
        cost_per_1k_output=s.backend_cost_per_1k_output, max_map_calls=s.map_reduce_max_calls,
        prefix_cached=s.backend_prefix_cached, self_route_turns=s.self_route_tool_turns,
        budget=Budget(s.agent_max_steps, s.agent_max_tokens, s.agent_max_seconds),
    )


def answer(
    corpus: str, question: str, strategy: Strategy | None = None, *, agent: bool = False
) -> AskResult:
    """Answer with the router (or the forced ``strategy``), reading through the plan executor; the
    same backend's tool-calling model reads on when Self-Route escalates. ``agent``: the model plans
    with tools from the start."""
    if agent:
        if strategy is not None:
            raise InvalidInputError("choose either a strategy or the agent, not both")
        s = get_settings()
        return ask_agent(get_sessionmaker(), corpus, question, chat=get_agent_chat(),
                         searcher=get_searcher(), budget=ask_options().budget, backend=s.chat_backend,
                         top_k=s.retrieve_top_k)
    return ask(get_sessionmaker(), corpus, question, model=get_answer_model(), searcher=get_searcher(),
               options=ask_options(), strategy=strategy, tool_chat=get_agent_chat())
