"""``corral export WORKSPACE``: a workspace's corpora (sources, documents, chunks), runs (events and
feedback) written to one file in the format of :mod:`corral.platform.backup.format`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from corral.core.db import (
    Chunk,
    Corpus,
    Document,
    DocumentImage,
    Feedback,
    Run,
    RunEvent,
    Source,
    session_scope,
)
from corral.core.db.migrate import current_revision
from corral.core.services import get_workspace
from corral.platform.backup.format import FORMAT, VERSION, encode_row, open_text

__all__ = ["ExportSummary", "export_workspace"]

SOURCE_SKIP = frozenset({"id", "corpus_id"})
DOCUMENT_SKIP = frozenset({"id", "corpus_id", "source_id"})
CHUNK_SKIP = frozenset({"id", "document_id"})
IMAGE_SKIP = frozenset({"id", "document_id"})
# key_id names an API key, which is not exported; the watchdog's notes are this deployment's.
RUN_SKIP = frozenset({"id", "corpus_id"})
EVENT_SKIP = frozenset({"id", "run_id"})
FEEDBACK_SKIP = frozenset({"id", "run_id"})

ExportSummary = dict[str, int]


def _line(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def export_workspace(workspace: str, path: Path) -> ExportSummary:
    """Write ``workspace`` to ``path`` (gzip when it ends in ``.gz``); returns the counts written.
    A missing workspace is a NotFoundError before anything is written."""
    counts = {"corpora": 0, "documents": 0, "chunks": 0, "runs": 0, "feedback": 0}
    with session_scope() as session:
        ws = get_workspace(session, workspace)
        header = {"type": "header", "format": FORMAT, "version": VERSION,
                  "schema": current_revision(), "exported_at": datetime.now(UTC).isoformat(),
                  "workspace": {"name": ws.name, "monthly_token_budget": ws.monthly_token_budget}}
        corpora = list(session.scalars(select(Corpus).where(Corpus.workspace_id == ws.id)
                                       .order_by(Corpus.name)))
        tmp = path.with_name(path.name + ".partial")
        with open_text(tmp, "w", gzipped=path.suffix == ".gz") as out:
            _line(out, header)
            for corpus in corpora:
                _corpus(session, out, corpus, counts)
            for corpus in corpora:
                _runs(session, out, corpus, counts)
            _line(out, {"type": "end", "counts": counts})
        tmp.replace(path)  # a file named as asked is always whole
    return counts


def _corpus(session: Any, out: IO[str], corpus: Corpus, counts: dict[str, int]) -> None:
    sources = list(session.scalars(select(Source).where(Source.corpus_id == corpus.id)
                                   .order_by(Source.id)))
    index = {s.id: i for i, s in enumerate(sources)}
    _line(out, {"type": "corpus", "name": corpus.name,
                "sources": [encode_row(s, SOURCE_SKIP) for s in sources]})
    counts["corpora"] += 1
    for doc in session.scalars(select(Document).where(Document.corpus_id == corpus.id)
                               .order_by(Document.path)):
        chunks = list(session.scalars(select(Chunk).where(Chunk.document_id == doc.id)
                                      .order_by(Chunk.ordinal)))
        # The images citations of OCR'd text show: not rebuilt on import, so they travel.
        images = list(session.scalars(select(DocumentImage).where(DocumentImage.document_id == doc.id)
                                      .order_by(DocumentImage.ref)))
        _line(out, {"type": "document", "corpus": corpus.name,
                    "source": index.get(doc.source_id) if doc.source_id is not None else None,
                    **encode_row(doc, DOCUMENT_SKIP),
                    "chunks": [encode_row(c, CHUNK_SKIP) for c in chunks],
                    "images": [encode_row(i, IMAGE_SKIP) for i in images]})
        counts["documents"] += 1
        counts["chunks"] += len(chunks)
        session.expunge_all()  # a big corpus is streamed, not held


def _runs(session: Any, out: IO[str], corpus: Corpus, counts: dict[str, int]) -> None:
    for run in session.scalars(select(Run).where(Run.corpus_id == corpus.id)
                               .order_by(Run.created_at, Run.id)):
        row = encode_row(run, RUN_SKIP)
        row["params"] = {k: v for k, v in (run.params or {}).items() if k != "key_id"}
        events = session.scalars(select(RunEvent).where(RunEvent.run_id == run.id)
                                 .order_by(RunEvent.seq))
        feedback = list(session.scalars(select(Feedback).where(Feedback.run_id == run.id)
                                        .order_by(Feedback.id)))
        _line(out, {"type": "run", "corpus": corpus.name, **row,
                    "events": [encode_row(e, EVENT_SKIP) for e in events],
                    "feedback": [encode_row(f, FEEDBACK_SKIP) for f in feedback]})
        counts["runs"] += 1
        counts["feedback"] += len(feedback)
