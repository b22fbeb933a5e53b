"""``corral import FILE``: a workspace from an export (see :mod:`corral.platform.backup.format`).

The workspace must not hold a corpus of the same name as one imported (nothing is overwritten);
``--workspace`` imports under another name. Everything is read and written in one database
transaction — a file that is malformed anywhere, or cut short (no ``end`` record), imports
nothing — and the vectors, which are not exported, are rebuilt by embedding the chunks' texts
(each distinct text once), the vector store written before the transaction commits; on any error
the collections created here are dropped again. Chunk ids are computed afresh for the new corpus
(see :func:`~corral.ingestion.pipeline.chunk_id`), exactly as an ingest of the same files gives.
Runs that were still queued or running when exported are imported failed: nothing runs them here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.core.db import (
    Chunk,
    Corpus,
    Document,
    DocumentImage,
    Feedback,
    Run,
    RunEvent,
    RunState,
    Source,
    session_scope,
)
from corral.core.errors import ConflictError, InvalidInputError
from corral.core.index import IndexedChunk, get_keyword_index, get_vector_store
from corral.core.services import get_or_create_workspace, validate_corpus_name, validate_workspace_name
from corral.ingestion.embedding import EmbedStats, embed_deduplicated, get_embedder
from corral.ingestion.pipeline import chunk_id
from corral.ingestion.pipeline.batch import chunk_metadata
from corral.ingestion.pipeline.finish import refresh_corpus_totals
from corral.platform.backup.export import (
    CHUNK_SKIP,
    DOCUMENT_SKIP,
    EVENT_SKIP,
    FEEDBACK_SKIP,
    IMAGE_SKIP,
    RUN_SKIP,
    SOURCE_SKIP,
)
from corral.platform.backup.format import FORMAT, VERSION, decode_row, open_text

__all__ = ["ImportSummary", "import_workspace"]

log = logging.getLogger(__name__)
_EMBED_EVERY = 512  # chunks embedded and written to the vector store at a time
_MAX_LINE = 256 * 1024 * 1024


@dataclass(slots=True)
class ImportSummary:
    workspace: str
    counts: dict[str, int] = field(default_factory=lambda: {
        "corpora": 0, "documents": 0, "chunks": 0, "runs": 0, "feedback": 0})
    embedded: int = 0  # distinct chunk texts the model ran on


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open_text(path, "r") as lines:
            for number, line in enumerate(lines, 1):
                if len(line) > _MAX_LINE:
                    raise InvalidInputError(f"line {number}: longer than {_MAX_LINE} characters")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"line {number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                    raise InvalidInputError(f"line {number}: a record must be an object with a type")
                yield number, record
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip errors are OSErrors
        raise InvalidInputError(f"cannot read {path.name}: {exc}") from None


class _Importer:
    def __init__(self, session: Session, summary: ImportSummary) -> None:
        self.session = session
        self.summary = summary
        self.workspace_id = 0
        self.corpora: dict[str, Corpus] = {}
        self.sources: dict[str, list[Source]] = {}
        self.pending: list[tuple[int, Chunk, str, str]] = []  # (corpus id, chunk, path, kind)
        self.store = get_vector_store()
        self.keyword = get_keyword_index()
        self.embedder: Any = None

    def header(self, where: str, record: dict[str, Any], rename: str | None) -> None:
        if record.get("format") != FORMAT:
            raise InvalidInputError(f"{where}: not a Corral export (format {record.get('format')!r})")
        if record.get("version") != VERSION:
            raise InvalidInputError(f"{where}: export version {record.get('version')!r}; this "
                                    f"Corral reads version {VERSION}")
        ws = record.get("workspace")
        if not isinstance(ws, dict) or not isinstance(ws.get("name"), str):
            raise InvalidInputError(f"{where}: the header names no workspace")
        name = validate_workspace_name(rename or ws["name"])
        budget = ws.get("monthly_token_budget")
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 0):
            raise InvalidInputError(f"{where}: monthly_token_budget must be a whole number")
        workspace = get_or_create_workspace(self.session, name)
        if workspace.monthly_token_budget is None:
            workspace.monthly_token_budget = budget
        self.workspace_id = workspace.id
        self.summary.workspace = name

    def corpus(self, where: str, record: dict[str, Any]) -> None:
        name = validate_corpus_name(str(record.get("name", "")))
        if name in self.corpora:
            raise InvalidInputError(f"{where}: corpus {name!r} appears twice")
        if self.session.scalar(select(Corpus.id).where(Corpus.workspace_id == self.workspace_id,
                                                      Corpus.name == name)) is not None:
            raise ConflictError(f"the workspace {self.summary.workspace!r} already has a corpus "
                                f"named {name!r}: import under another workspace (--workspace)")
        corpus = Corpus(workspace_id=self.workspace_id, name=name, token_count=0, document_count=0)
        self.session.add(corpus)
        self.session.flush()
        sources = record.get("sources") or []
        if not isinstance(sources, list):
            raise InvalidInputError(f"{where}: sources must be a list")
        self.sources[name] = []
        for i, data in enumerate(sources):
            source = Source(corpus_id=corpus.id, **decode_row(Source, data, SOURCE_SKIP,
                                                             f"{where} source {i}"))
            self.session.add(source)
            self.sources[name].append(source)
        self.session.flush()
        self.corpora[name] = corpus
        self.summary.counts["corpora"] += 1

    def _corpus_of(self, where: str, record: dict[str, Any]) -> Corpus:
        corpus = self.corpora.get(str(record.pop("corpus", "")))
        if corpus is None:
            raise InvalidInputError(f"{where}: names a corpus not declared before it")
        return corpus

    def document(self, where: str, record: dict[str, Any]) -> None:
        corpus = self._corpus_of(where, record)
        source_index, chunks = record.pop("source", None), record.pop("chunks", [])
        images = record.pop("images", [])
        if not isinstance(chunks, list) or not isinstance(images, list):
            raise InvalidInputError(f"{where}: chunks and images must be lists")
        doc = Document(corpus_id=corpus.id, **decode_row(Document, record, DOCUMENT_SKIP, where))
        if source_index is not None:
            sources = self.sources[corpus.name]
            if not isinstance(source_index, int) or not 0 <= source_index < len(sources):
                raise InvalidInputError(f"{where}: source {source_index!r} is not one of its corpus's")
            doc.source_id = sources[source_index].id
        self.session.add(doc)
        self.session.flush()
        for i, data in enumerate(chunks):
            values = decode_row(Chunk, data, CHUNK_SKIP, f"{where} chunk {i}")
            chunk = Chunk(id=chunk_id(corpus.id, doc.path, doc.content_hash, int(values["ordinal"])),
                          document_id=doc.id, **values)
            self.session.add(chunk)
            self.pending.append((corpus.id, chunk, doc.path, doc.kind))
        for i, data in enumerate(images):
            self.session.add(DocumentImage(document_id=doc.id, **decode_row(
                DocumentImage, data, IMAGE_SKIP, f"{where} image {i}")))
        self.summary.counts["documents"] += 1
        self.summary.counts["chunks"] += len(chunks)
        if len(self.pending) >= _EMBED_EVERY:
            self.flush_vectors()

    def run(self, where: str, record: dict[str, Any]) -> None:
        corpus = self._corpus_of(where, record)
        events, feedback = record.pop("events", []), record.pop("feedback", [])
        if not isinstance(events, list) or not isinstance(feedback, list):
            raise InvalidInputError(f"{where}: events and feedback must be lists")
        run = Run(corpus_id=corpus.id, **decode_row(Run, record, RUN_SKIP, where))
        if not run.state.finished:
            run.state, run.error = RunState.FAILED, "exported while unfinished; not run after import"
        self.session.add(run)
        self.session.flush()
        for i, data in enumerate(events):
            self.session.add(RunEvent(run_id=run.id, **decode_row(RunEvent, data, EVENT_SKIP,
                                                                  f"{where} event {i}")))
        for i, data in enumerate(feedback):
            values = decode_row(Feedback, data, FEEDBACK_SKIP, f"{where} feedback {i}")
            if values.get("rating") not in (-1, 0, 1):
                raise InvalidInputError(f"{where} feedback {i}: rating must be -1, 0 or 1")
            self.session.add(Feedback(run_id=run.id, **values))
        self.summary.counts["runs"] += 1
        self.summary.counts["feedback"] += len(feedback)

    def flush_vectors(self) -> None:
        """Embed the pending chunks (each distinct text once) and write them to the vector store
        and the keyword index."""
        if not self.pending:
            return
        self.session.flush()  # duplicate chunk ids fail here, before any embedding
        if self.embedder is None:
            self.embedder = get_embedder()
        texts = [c.text for _, c, _, _ in self.pending]
        hashes = [c.content_hash for _, c, _, _ in self.pending]
        stats = EmbedStats()
        vectors = embed_deduplicated(self.embedder, texts, hashes, {}, stats)
        self.summary.embedded += stats.embedded
        by_corpus: dict[int, list[IndexedChunk]] = {}
        for (corpus_id, chunk, path, kind), vector in zip(self.pending, vectors, strict=True):
            by_corpus.setdefault(corpus_id, []).append(IndexedChunk(
                id=chunk.id, text=chunk.text, embedding=vector,
                metadata=chunk_metadata(path, kind, chunk)))
        for corpus_id, records in by_corpus.items():
            self.store.upsert(corpus_id, records)
            self.keyword.upsert(corpus_id, records)
        self.pending = []


def import_workspace(path: Path, workspace: str | None = None) -> ImportSummary:
    """Import the export at ``path`` (into ``workspace`` when given, else the one it names); see
    the module docstring for what is checked and what happens on an error."""
    if not path.is_file():
        raise InvalidInputError(f"no export file at {path}")
    summary = ImportSummary(workspace=workspace or "")
    importer: _Importer | None = None
    try:
        with session_scope() as session:
            importer = _Importer(session, summary)
            ended = False
            for number, record in _records(path):
                where, kind = f"line {number}", record.pop("type")
                if ended:
                    raise InvalidInputError(f"{where}: records after the end record")
                if number == 1 or not importer.workspace_id:
                    if kind != "header":
                        raise InvalidInputError(f"{where}: the file does not start with a header")
                    importer.header(where, record, workspace)
                elif kind == "corpus":
                    importer.corpus(where, record)
                elif kind == "document":
                    importer.document(where, record)
                elif kind == "run":
                    importer.run(where, record)
                elif kind == "end":
                    ended = True
                    if record.get("counts") != summary.counts:
                        raise InvalidInputError(f"{where}: the end record counts {record.get('counts')}"
                                                f" but the file holds {summary.counts}")
                else:
                    raise InvalidInputError(f"{where}: unknown record type {kind!r}")
            if not ended:
                raise InvalidInputError("the export ends without its end record: it was cut short")
            importer.flush_vectors()
            for corpus in importer.corpora.values():
                refresh_corpus_totals(session, corpus.id)
    except BaseException:
        if importer is not None:  # the SQL rolled back: so do the vectors written for it
            for corpus in importer.corpora.values():
                if corpus.id is not None:
                    try:
                        importer.store.drop(corpus.id)
                    except Exception as exc:
                        log.warning("could not drop the vectors of an aborted import: %r", exc)
        raise
    return summary
