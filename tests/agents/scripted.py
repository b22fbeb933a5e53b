"""A scripted chat model and an in-memory searcher: the agents layer tested without a model, an
embedder, a vector store or the platform (as nanochat's tests drive its engine with a mock model).

``ScriptedChat`` is a real LangChain ``BaseChatModel`` — the one contract the agents use — that
replays replies (text or tool calls) in order, the last one forever, and counts tokens with a word
tokenizer. ``WordSearcher`` ranks a corpus's chunk rows by the question words they contain.
``Corpora`` writes documents and chunks into a throwaway SQLite database, chunk ids from ingestion's
own formula, token counts from the same word tokenizer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field, PrivateAttr
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from corral.agents.retrieval import Ranked, content_terms
from corral.core.db import Base, Chunk, Document, DocumentStatus, get_engine, get_sessionmaker
from corral.core.services import get_or_create_corpus
from corral.ingestion.pipeline.batch import chunk_id

_WORD = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """The scripted tokenizer: a token per word or punctuation mark."""
    return len(_WORD.findall(text))


def call(name: str, n: int = 1, **args: Any) -> dict[str, Any]:
    """A tool call, as a reply's ``tool_calls`` carries it."""
    return {"name": name, "args": args, "id": f"m{n}", "type": "tool_call"}


def calls(*items: dict[str, Any]) -> AIMessage:
    """A reply that calls tools."""
    return AIMessage("", tool_calls=list(items))


class ScriptedChat(BaseChatModel):
    """Replies from ``script`` in order, then the last one forever; every call's messages and keyword
    arguments are kept in ``seen``. ``tool_calling=False``: ``bind_tools`` is not implemented, as on a
    backend that cannot call tools."""

    script: list[AIMessage]
    tool_calling: bool = True
    model_name: str = "scripted"
    seen: list[tuple[list[BaseMessage], dict[str, Any]]] = Field(default_factory=list)
    _next: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def get_token_ids(self, text: str) -> list[int]:
        return list(range(count_words(text)))

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        if not self.tool_calling:
            raise NotImplementedError
        return self.bind(tools=[getattr(t, "name", t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.seen.append((list(messages), dict(kwargs)))
        reply = self.script[min(self._next, len(self.script) - 1)]
        self._next += 1
        prompt = sum(count_words(m.text) for m in messages)
        out = AIMessage(reply.text, tool_calls=reply.tool_calls, response_metadata={"finish_reason": "stop"},
                        usage_metadata={"input_tokens": prompt, "output_tokens": count_words(reply.text) + 1,
                                        "total_tokens": prompt + count_words(reply.text) + 1})
        return ChatResult(generations=[ChatGeneration(message=out)])

    @property
    def answers(self) -> int:
        """How many calls were made without tools bound (the routed answers)."""
        return sum("tools" not in kw for _, kw in self.seen)


def scripted(*replies: str | AIMessage, window: int = 2048, tool_calling: bool = True) -> ScriptedChat:
    """A scripted chat model with a ``window``-token context."""
    script = [r if isinstance(r, AIMessage) else AIMessage(r) for r in replies]
    return ScriptedChat(script=script, tool_calling=tool_calling, profile={"max_input_tokens": window})


class WordSearcher:
    """Chunks ranked by the share of the question's content words they contain, best first (dense-only
    shape: ``dense`` is that share)."""

    hybrid = False

    def search(self, session: Session, corpus_id: int, question: str, k: int) -> list[Ranked]:
        words = set(content_terms(question))
        if k <= 0 or not words:
            return []
        chunks = session.scalars(select(Chunk).join(Document).where(Document.corpus_id == corpus_id)
                                 .options(selectinload(Chunk.document)))
        scored = [(len(words & set(re.findall(r"\w+", c.text.lower()))) / len(words), c) for c in chunks]
        best = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1].document.path,
                                                                      s[1].ordinal))[:k]
        return [Ranked(c, score, score, None, rank) for rank, (score, c) in enumerate(best, start=1)]


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


def write_documents(session: Session, name: str, files: Mapping[str, str], count: Callable[[str], int], *,
                    max_chars: int = 400) -> list[tuple[Chunk, str]]:
    """Documents and paragraph chunks (spans that partition each text, as the chunker's do) of corpus
    ``name``, counted with ``count``; returns each new chunk with its document's path."""
    corpus = get_or_create_corpus(session, name)
    session.flush()
    out: list[tuple[Chunk, str]] = []
    for path, text in sorted(files.items()):
        h = hashlib.sha256(text.encode()).hexdigest()
        doc = Document(corpus_id=corpus.id, path=path, kind="code" if path.endswith(".py") else "text",
                       content_hash=h, size_bytes=len(text.encode()),
                       line_count=text.count("\n") + (not text.endswith("\n")),
                       token_count=count(text), status=DocumentStatus.INDEXED)
        for i, (a, b) in enumerate(_slices(text, max_chars)):
            piece = text[a:b]
            first = text.count("\n", 0, a) + 1
            chunk = Chunk(id=chunk_id(corpus.id, path, h, i), ordinal=i, start_line=first,
                          end_line=first + piece.rstrip("\n").count("\n"), char_start=a, char_end=b,
                          content_hash=hashlib.sha256(piece.encode()).hexdigest(), token_count=count(piece),
                          text=piece)
            doc.chunks.append(chunk)
            out.append((chunk, path))
        session.add(doc)
    session.flush()
    docs = session.scalars(select(Document).where(Document.corpus_id == corpus.id)).all()
    corpus.document_count = len(docs)
    corpus.token_count = sum(d.token_count for d in docs)
    return out


class Corpora:
    """A throwaway SQLite database of corpora, written with the scripted tokenizer's counts."""

    def __init__(self, folder: Path) -> None:
        url = f"sqlite:///{folder / 'agents.db'}"
        Base.metadata.create_all(get_engine(url))
        self.sessions: sessionmaker[Session] = get_sessionmaker(url)

    def add(self, name: str, files: Mapping[str, str], *, max_chars: int = 400) -> int:
        """Write corpus ``name``; returns its id."""
        with self.sessions.begin() as s:
            write_documents(s, name, files, count_words, max_chars=max_chars)
            return get_or_create_corpus(s, name).id
