"""The indexing pipeline as a job: per-document items, identical text embedded once, one bad
document never stopping the others, cancellation between batches, and runs that repeat or resume
after a crash converging on exactly the chunk ids of a clean run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from corral.core.db import Chunk, Document, DocumentStatus, JobKind, JobState, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.db.models import JobItem
from corral.core.errors import ServiceUnavailableError
from corral.core.index import get_keyword_index, get_vector_store
from corral.core.services import create_job, get_corpus, get_job, get_or_create_corpus, request_cancel
from corral.ingestion.ingest import ingest_now
from corral.ingestion.pipeline import IngestProgress, IngestServices, configured_services, run_ingest_job
from corral.ingestion.sources import PathSpec, spec_params


class CountingEmbedder:
    """The real embedder, counting what it is asked to embed; can be told to fail once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.fail_on_call: int | None = None
        self.calls = 0

    @property
    def model_name(self) -> str:
        return str(self.inner.model_name)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise ServiceUnavailableError("simulated outage")
        self.texts.extend(texts)
        return list(self.inner.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        return list(self.inner.embed_query(text))


@pytest.fixture
def services(corral_env: Path) -> IngestServices:
    ensure_schema()
    base = configured_services()
    return dataclasses.replace(base, embedder=CountingEmbedder(base.embedder), batch_size=2)


def _tree(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"doc{i}.md").write_text(f"# Doc {i}\n\nFact number {i}: the vault code is {i * 7}.\n")
    return root


def _job(corpus: str, path: Path) -> str:
    with session_scope() as s:
        corpus_id = get_or_create_corpus(s, corpus).id
        return create_job(s, JobKind.INGEST, corpus_id, {"corpus": corpus, **spec_params(PathSpec(path))}).id


def _state(corpus: str) -> tuple[set[str], set[str], int]:
    """(chunk ids in SQL, chunk ids in Chroma, corpus token count)."""
    with session_scope() as s:
        c = get_corpus(s, corpus)
        ids = set(s.scalars(select(Chunk.id).join(Document).where(Document.corpus_id == c.id)))
        corpus_id, tokens = c.id, c.token_count
    chroma = set(get_vector_store()._collection(corpus_id).get(include=[])["ids"])  # type: ignore[attr-defined]
    return ids, chroma, tokens


def test_job_records_every_document_and_identical_text_is_embedded_once(
    services: IngestServices, tmp_path: Path
) -> None:
    root = _tree(tmp_path / "kb", 4)
    same = "Shared boilerplate paragraph that appears in two files verbatim.\n"
    (root / "copy1.txt").write_text(same)
    (root / "copy2.txt").write_text(same)
    (root / "bad.txt").write_bytes(b"caf\xe9\n")
    seen: list[IngestProgress] = []

    job_id = _job("kb", root)
    assert run_ingest_job(services, job_id, progress=seen.append) is JobState.SUCCEEDED

    embedder = services.embedder
    assert isinstance(embedder, CountingEmbedder)
    assert embedder.texts.count(same) == 1  # two files, one embedding
    with session_scope() as s:
        job = get_job(s, job_id)
        assert (job.total, job.done, job.failed) == (7, 7, 1) and job.phase == "done"
        items = {i.path: (i.state, i.error) for i in s.scalars(select(JobItem).where(
            JobItem.job_id == job_id))}
        report = job.result
    assert items["kb/bad.txt"][0] == "failed" and "UTF-8" in (items["kb/bad.txt"][1] or "")
    assert sum(state == "indexed" for state, _ in items.values()) == 6
    assert report is not None and report["indexed"] == 6 and report["failed"] == 1
    assert [p.done for p in seen] == [2, 4, 6, 7] and seen[-1].total == 7
    sql_ids, chroma_ids, tokens = _state("kb")
    assert sql_ids == chroma_ids and len(sql_ids) == report["chunks"] and tokens == report["tokens"] > 0

    # Keyword search sees the same chunks, and a changed file that still shares a chunk with
    # another reuses the stored vector instead of embedding it again.
    with session_scope() as s:
        corpus_id = get_corpus(s, "kb").id
    hits = get_keyword_index().search(corpus_id, "vault code 21", 3)
    assert hits[0].metadata["path"] == "kb/doc3.md" and hits[0].chunk_id in sql_ids
    (root / "copy2.txt").write_text(same + "\n" + "x" * 2000 + "\n")
    embedder.texts.clear()
    second = ingest_now("kb", root)
    assert (second.indexed, second.unchanged, second.failed) == (1, 5, 1)
    assert same not in embedder.texts


def test_deleted_files_leave_sql_chroma_and_the_keyword_index(
    services: IngestServices, tmp_path: Path
) -> None:
    root = _tree(tmp_path / "kb", 3)
    assert run_ingest_job(services, _job("kb", root)) is JobState.SUCCEEDED
    (root / "doc1.md").unlink()
    job_id = _job("kb", root)
    assert run_ingest_job(services, job_id) is JobState.SUCCEEDED
    sql_ids, chroma_ids, _ = _state("kb")
    assert sql_ids == chroma_ids
    with session_scope() as s:
        corpus_id = get_corpus(s, "kb").id
        paths = set(s.scalars(select(Document.path).where(Document.corpus_id == corpus_id)))
        removed = s.scalar(select(JobItem.state).where(JobItem.job_id == job_id,
                                                        JobItem.path == "kb/doc1.md"))
    assert paths == {"kb/doc0.md", "kb/doc2.md"} and removed == "removed"
    assert get_keyword_index().search(corpus_id, "vault code 7", 10)[0].metadata["path"] != "kb/doc1.md"
    assert all(h.metadata["path"] != "kb/doc1.md" for h in get_keyword_index().search(corpus_id, "Doc", 10))


def test_a_document_that_breaks_the_chunker_fails_alone(
    services: IngestServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import batch as batch_module

    real = batch_module.chunk_document

    def explode(doc: Any, chunk_chars: int) -> Any:
        if "number 2" in doc.text:
            raise RecursionError("parser bug")
        return real(doc, chunk_chars)

    monkeypatch.setattr(batch_module, "chunk_document", explode)
    root = _tree(tmp_path / "kb", 4)
    job_id = _job("kb", root)
    assert run_ingest_job(services, job_id) is JobState.SUCCEEDED
    with session_scope() as s:
        docs = {d.path: d for d in s.scalars(select(Document))}
        assert docs["kb/doc2.md"].status is DocumentStatus.FAILED
        assert "parser bug" in (docs["kb/doc2.md"].error or "")
        assert all(docs[f"kb/doc{i}.md"].status is DocumentStatus.INDEXED for i in (0, 1, 3))
        assert get_job(s, job_id).failed == 1


def test_cancel_stops_between_batches(services: IngestServices, tmp_path: Path) -> None:
    root = _tree(tmp_path / "kb", 6)
    job_id = _job("kb", root)

    def cancel_after_first(p: IngestProgress) -> None:
        if p.done == 2:
            with session_scope() as s:
                request_cancel(s, job_id)

    assert run_ingest_job(services, job_id, progress=cancel_after_first) is JobState.CANCELLED
    with session_scope() as s:
        states = [i.state for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id))]
        job = get_job(s, job_id)
        assert job.result is not None and job.result["cancelled"] == 4
    assert states.count("indexed") == 2 and states.count("cancelled") == 4


def test_a_crash_mid_job_resumes_to_the_ids_of_a_clean_run(
    services: IngestServices, tmp_path: Path
) -> None:
    root = _tree(tmp_path / "kb", 6)
    clean_job = _job("clean", root)
    assert run_ingest_job(services, clean_job) is JobState.SUCCEEDED
    clean_ids, _, clean_tokens = _state("clean")

    embedder = services.embedder
    assert isinstance(embedder, CountingEmbedder)
    embedder.fail_on_call = embedder.calls + 2  # the second batch of the next job dies
    job_id = _job("crashy", root)
    with pytest.raises(ServiceUnavailableError):
        run_ingest_job(services, job_id)
    with session_scope() as s:
        assert get_job(s, job_id).state is JobState.RUNNING  # left for a retry or the watchdog
    assert run_ingest_job(services, job_id) is JobState.SUCCEEDED  # the retry
    ids, chroma_ids, tokens = _state("crashy")
    with session_scope() as s:
        crashy = get_corpus(s, "crashy").id
        clean = get_corpus(s, "clean").id
    # Chunk ids carry the corpus id: compare them as if both had the same corpus.
    from corral.ingestion.pipeline import chunk_id

    with session_scope() as s:
        rows = s.execute(select(Document.path, Document.content_hash, Chunk.ordinal)
                         .join(Chunk).where(Document.corpus_id == crashy)).all()
    assert {chunk_id(clean, p, h, o) for p, h, o in rows} == clean_ids
    assert ids == chroma_ids and tokens == clean_tokens

    # Running the finished job again, or a new job over the same files, changes nothing.
    assert run_ingest_job(services, job_id) is JobState.SUCCEEDED
    again = ingest_now("crashy", root)
    assert (again.indexed, again.unchanged) == (0, 6)
    assert _state("crashy") == (ids, chroma_ids, tokens)


def test_a_document_that_kills_its_worker_fails_alone_after_a_few_attempts(
    services: IngestServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import MAX_ITEM_ATTEMPTS
    from corral.ingestion.pipeline import batch as batch_module

    real = batch_module.chunk_document

    def die(doc: Any, chunk_chars: int) -> Any:
        if "number 1" in doc.text:
            raise SystemExit("worker process killed")  # not an Exception: nothing catches it
        return real(doc, chunk_chars)

    monkeypatch.setattr(batch_module, "chunk_document", die)
    root = _tree(tmp_path / "kb", 2)  # doc0 and doc1 share one batch
    job_id = _job("kb", root)
    runs = 0
    while True:
        runs += 1
        try:
            state = run_ingest_job(services, job_id)
            break
        except SystemExit:
            assert runs <= MAX_ITEM_ATTEMPTS + 1
    assert state is JobState.SUCCEEDED
    with session_scope() as s:
        items = {i.path: (i.state, i.error) for i in s.scalars(select(JobItem).where(
            JobItem.job_id == job_id))}
    assert items["kb/doc0.md"][0] == "indexed"
    assert items["kb/doc1.md"][0] == "failed" and "interrupted" in (items["kb/doc1.md"][1] or "")


def _cancel(job_id: str) -> None:
    with session_scope() as s:
        request_cancel(s, job_id)


def test_cancel_stops_a_batch_between_documents(
    services: IngestServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import batch as batch_module

    root = _tree(tmp_path / "kb", 6)
    job_id = _job("kb", root)
    one_batch = dataclasses.replace(services, batch_size=32, checkpoint_seconds=0.0)
    read_one = batch_module._read_one
    seen: list[str] = []

    def read_then_cancel(*args: Any) -> Any:
        outcome = read_one(*args)
        seen.append(outcome.path)
        if len(seen) == 2:
            _cancel(job_id)
        return outcome

    monkeypatch.setattr(batch_module, "_read_one", read_then_cancel)
    assert run_ingest_job(one_batch, job_id) is JobState.CANCELLED
    assert len(seen) == 2  # the other four were never read
    with session_scope() as s:
        states = {i.path: i.state for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id))}
        job = get_job(s, job_id)
        assert job.error == "cancelled while running after 2 of 6 documents"
    assert sorted(p for p, st in states.items() if st == "indexed") == ["kb/doc0.md", "kb/doc1.md"]
    assert sum(st == "cancelled" for st in states.values()) == 4
    ids, chroma, _ = _state("kb")
    assert ids == chroma and ids  # what was written is whole in SQL and Chroma alike


def test_cancel_stops_inside_a_long_document_between_embedding_groups(
    services: IngestServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import batch as batch_module

    monkeypatch.setattr(batch_module, "EMBED_GROUP", 4)
    root = _tree(tmp_path / "kb", 3)
    (root / "big.md").write_text("".join(f"## Part {i}\n\n" + f"Sentence {i} of many. " * 30 + "\n\n"
                                         for i in range(40)))
    job_id = _job("kb", root)
    embedder = services.embedder
    assert isinstance(embedder, CountingEmbedder)

    class CancellingEmbedder(CountingEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            if self.calls == 0:
                _cancel(job_id)
            return super().embed_documents(texts)

    cancelling = CancellingEmbedder(embedder.inner)
    one_batch = dataclasses.replace(services, batch_size=32, checkpoint_seconds=0.0, embedder=cancelling)
    assert run_ingest_job(one_batch, job_id) is JobState.CANCELLED
    assert cancelling.calls == 1 and len(cancelling.texts) == 4  # one group, then it stopped
    with session_scope() as s:
        states = [i.state for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id))]
        assert not s.scalars(select(Document).join(JobItem, JobItem.path == Document.path)
                             .where(JobItem.job_id == job_id)).all()  # nothing half-written
    assert states == ["cancelled"] * 4


def test_a_service_briefly_down_more_often_than_the_poison_limit_fails_no_document(
    services: IngestServices, tmp_path: Path
) -> None:
    from corral.ingestion.pipeline import MAX_ITEM_ATTEMPTS

    root = _tree(tmp_path / "kb", 2)
    job_id = _job("kb", root)
    embedder = services.embedder
    assert isinstance(embedder, CountingEmbedder)
    # The embedder (standing for the vector store or the database) is down for more tries than a
    # crashing document is allowed: errors that end a try are not crashes.
    outages = MAX_ITEM_ATTEMPTS + 2
    for _ in range(outages):
        embedder.fail_on_call = embedder.calls + 1
        with pytest.raises(ServiceUnavailableError):
            run_ingest_job(services, job_id)
    assert run_ingest_job(services, job_id) is JobState.SUCCEEDED
    with session_scope() as s:
        states = [i.state for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id))]
    assert states == ["indexed", "indexed"]
