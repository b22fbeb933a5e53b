"""The composition root: builds the services once per process and wires them into each use case.

Everything here is lazy and cached per process, so importing the CLI or the API costs nothing and a
long-lived server loads each model once.
"""

from __future__ import annotations

from functools import lru_cache

from corral.agents.ask import AskResult, Strategy, ask
from corral.core.config import get_settings
from corral.core.db import get_sessionmaker
from corral.core.db.migrate import ensure_schema
from corral.core.errors import ModelError
from corral.core.index import get_vector_store
from corral.inference.errors import InferenceError
from corral.inference.hf import HFChatModel
from corral.ingestion.embedding import get_embedder

# Ingesting in this process is the pipeline's own configured entry point; the name says where it runs.
from corral.ingestion.pipeline import ingest_configured as ingest_in_process

__all__ = ["answer", "get_chat_model", "ingest_in_process", "prepare"]


def prepare() -> None:
    """Make the database usable: embedded mode migrates its own file, server mode checks it."""
    ensure_schema()


@lru_cache(maxsize=1)
def get_chat_model() -> HFChatModel:
    settings = get_settings()
    folder, gguf_file = settings.resolved_chat_model()
    try:
        return HFChatModel(folder, gguf_file, context_window=settings.chat_context_window)
    except InferenceError as exc:
        raise ModelError(str(exc)) from exc


def answer(corpus: str, question: str, strategy: Strategy | None = None) -> AskResult:
    settings = get_settings()
    return ask(
        get_sessionmaker(),
        corpus,
        question,
        model=get_chat_model(),
        embedder=get_embedder(),
        store=get_vector_store(),
        max_new_tokens=settings.chat_max_new_tokens,
        top_k=settings.retrieve_top_k,
        strategy=strategy,
    )
