"""The composition root: builds the services once per process and wires them into each use case.

Everything here is lazy and cached per process, so importing the CLI or the API costs little and a
long-lived server loads each model once. The heavy libraries (torch, transformers, chromadb) are
imported where a model or the vector store is first needed, so a question refused before it is read
(empty, unknown corpus) returns in about a second.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from langchain_core.language_models import BaseChatModel

from corral.agents.ask import AskOptions, AskResult, Strategy, ask, ask_agent
from corral.agents.backends import EngineChatModel, remote_chat_model
from corral.agents.retrieval import HybridSearcher, Ranked, Searcher, find_keyword_index
from corral.core.config import get_settings
from corral.core.db import get_sessionmaker
from corral.core.db.migrate import ensure_schema
from corral.core.errors import ConfigurationError, InvalidInputError, ModelError
from corral.core.services import DEFAULT_WORKSPACE
from corral.inference.errors import InferenceError

# Ingestion's one entry, run in the calling thread; the name says where it runs.
from corral.ingestion.ingest import ingest_now as ingest_in_process

__all__ = [
    "answer", "ask_options", "get_chat", "get_chat_model", "get_searcher", "ingest_in_process",
    "load_text_engine", "prepare",
]

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from corral.inference.engine import Engine
    from corral.inference.hf import HFChatModel

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
    from corral.inference.engine import EngineOptions, load_engine, resolve_format
    from corral.inference.hf import HFChatModel

    settings = get_settings()
    backend = backend or settings.inference_backend
    if backend in ("auto", "engine"):
        try:  # a weight format this CPU cannot run is the operator's to fix, not a reason to fall back
            resolve_format(settings.engine_weights)
        except InferenceError as exc:
            raise ConfigurationError(f"CORRAL_ENGINE_WEIGHTS: {exc}") from exc
        try:
            options = EngineOptions(
                weights=settings.engine_weights, context_window=settings.chat_context_window,
                cache_dir=settings.cache_dir / "prefix", converted_dir=settings.cache_dir / "models",
            )
            return load_engine(folder, gguf_file, options)
        except InferenceError as exc:
            if backend == "engine":
                raise ModelError(f"the embedded engine cannot load {folder}: {exc}") from exc
            log.warning("embedded engine unavailable (%s); using transformers", exc)
    try:
        return HFChatModel(folder, gguf_file, context_window=settings.chat_context_window)
    except InferenceError as exc:
        raise ModelError(str(exc)) from exc


# Loading models (and importing the libraries they need: transformers' lazy modules are not safe to
# import from two threads at once) happens under one lock: concurrent first asks load the model once.
_LOADING = threading.RLock()
T = TypeVar("T")


class _LoadedOnce(Generic[T]):
    """``load()``'s value, computed once per process under the loading lock (``cache_clear`` forgets it)."""

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._value: T | None = None
        functools.update_wrapper(self, load)

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with _LOADING:
                if self._value is None:
                    self._value = self._load()
                value = self._value
        return value

    def cache_clear(self) -> None:
        with _LOADING:
            self._value = None

    @property
    def loaded(self) -> bool:
        """Whether the value has been computed (a refused question must leave the model unloaded)."""
        return self._value is not None


def _load_chat_model() -> Engine | HFChatModel:
    """The embedded chat model ``ask`` and the agent use (loaded once per process)."""
    folder, gguf_file = get_settings().resolved_chat_model()
    return load_text_engine(folder, gguf_file)


get_chat_model = _LoadedOnce(_load_chat_model)


def _load_local_tokenizer() -> Any:
    from corral.ingestion.tokens import load_tokenizer

    s = get_settings()
    folder, gguf_file = s.resolved_chat_model()
    return load_tokenizer(folder, gguf_file, s.cache_dir)


_local_tokenizer = _LoadedOnce(_load_local_tokenizer)


def _local_token_ids(text: str) -> list[int]:
    return [int(i) for i in _local_tokenizer()(text, add_special_tokens=False)["input_ids"]]


@lru_cache(maxsize=1)
def _remote_chat() -> BaseChatModel:
    s = get_settings()
    assert s.openai_base_url and s.openai_model  # the settings validator requires both for openai
    key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
    return remote_chat_model(s.openai_base_url, s.openai_model, key, max_tokens=s.chat_max_new_tokens,
                             context_window=s.chat_context_window or 8192, token_ids=_local_token_ids)


def get_chat() -> BaseChatModel:
    """The chat model ``ask`` and the agent use: an OpenAI-compatible server whose window is declared in
    ``CORRAL_CHAT_CONTEXT_WINDOW`` (tokens counted with the local tokenizer, an estimate for a remote
    vocabulary), or the embedded model — loaded on first use, so a refused question loads nothing."""
    s = get_settings()
    if s.chat_backend == "openai":
        return _remote_chat()
    folder, gguf_file = s.resolved_chat_model()
    # The name the loaders give the model, known before it is loaded (a refusal's Run records it).
    name = Path(gguf_file).stem if gguf_file else folder.name
    return EngineChatModel(loader=get_chat_model, max_tokens=s.chat_max_new_tokens, model_name=name)


class _LazySearcher:
    """Dense + BM25 search, built on first use: opening the vector store and loading the embedder take
    seconds, and a refused question needs neither."""

    @cached_property
    def _searcher(self) -> HybridSearcher:
        with _LOADING:
            from corral.core.index import get_vector_store
            from corral.ingestion.embedding import get_embedder

            return HybridSearcher(get_vector_store(), get_embedder(), find_keyword_index())

    @property
    def hybrid(self) -> bool:
        return self._searcher.hybrid

    def search(self, session: Session, corpus_id: int, question: str, k: int) -> list[Ranked]:
        return self._searcher.search(session, corpus_id, question, k)


def get_searcher() -> Searcher:
    """Dense + BM25 search (dense only where the keyword index cannot open), built on first use."""
    return _LazySearcher()


def ask_options() -> AskOptions:
    return AskOptions.from_settings(get_settings())


def answer(
    corpus: str, question: str, strategy: Strategy | None = None, *, agent: bool = False,
    workspace: str = DEFAULT_WORKSPACE, run_id: str | None = None,
) -> AskResult:
    """Answer with the router (or the forced ``strategy``), reading through the plan executor; the
    model reads on with the tools when Self-Route escalates. ``agent``: the model plans with tools from
    the start. ``corpus`` is looked up in ``workspace``. ``run_id``: the submitted run this answer
    fills, reporting its progress as events (see :mod:`corral.platform.runs`)."""
    if agent:
        if strategy is not None:
            raise InvalidInputError("choose either a strategy or the agent, not both")
        s = get_settings()
        return ask_agent(get_sessionmaker(), corpus, question, chat=get_chat(), searcher=get_searcher(),
                         budget=ask_options().budget, backend=s.chat_backend, top_k=s.retrieve_top_k,
                         workspace=workspace, run_id=run_id, guard=ask_options().guard)
    return ask(get_sessionmaker(), corpus, question, chat=get_chat(), searcher=get_searcher(),
               options=replace(ask_options(), workspace=workspace), strategy=strategy, run_id=run_id)
