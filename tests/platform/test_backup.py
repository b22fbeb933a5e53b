"""Backup and upgrade: ``corral export`` / ``corral import`` round-trip a workspace — corpora,
documents, chunks (ids equal to a clean ingest's), vectors rebuilt, runs with their events and
feedback — into a fresh deployment; a malformed or truncated file imports nothing; and
``corral db upgrade`` of a PostgreSQL database populated at the previous release keeps its data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import clear_caches

MARKER = "zq7walrus"


def _ingest(root: Path) -> None:
    from corral.core.db.migrate import ensure_schema
    from corral.ingestion.ingest import ingest_now
    from corral.ingestion.sources import PathSpec

    ensure_schema()
    root.mkdir()
    for i in range(3):
        (root / f"note{i}.md").write_text(f"# Note {i}\n\nThe code for note {i} is {MARKER}{i}.\n"
                                          + "A filler sentence. " * 30 + "\n")
    ingest_now("kb", PathSpec(root))


def _add_runs() -> None:
    from corral.core.db import RunState, session_scope
    from corral.core.services import get_corpus
    from corral.core.services.runs import add_feedback, append_event, create_run, finish_run

    with session_scope() as s:
        corpus = get_corpus(s, "kb")
        done = create_run(s, corpus, "What is the code of note 1?", {"strategy": None, "key_id": 7})
        done.state, done.answer, done.strategy = RunState.RUNNING, f"It is {MARKER}1.", "stuff"
        done.citations = [{"path": "kb/note1.md", "start_line": 3, "end_line": 3}]
        append_event(s, done.id, "decision", {"strategy": "stuff"})
        finish_run(s, done, RunState.SUCCEEDED, result={"answer": done.answer})
        add_feedback(s, done, 1, "spot on")
        create_run(s, corpus, "Still waiting?", {})  # queued when exported


def _snapshot() -> dict[str, Any]:
    """What must survive: documents, chunk ids, vectors, keyword hits, runs, events, feedback."""
    from corral.core.db import Chunk, Document, Feedback, Run, RunEvent, session_scope
    from corral.core.index import get_keyword_index, get_vector_store
    from corral.core.services import get_corpus

    with session_scope() as s:
        corpus = get_corpus(s, "kb")
        docs = {d.path: (d.content_hash, d.token_count, d.status.value)
                for d in s.scalars(select(Document).where(Document.corpus_id == corpus.id))}
        chunks = set(s.scalars(select(Chunk.id).join(Document).where(Document.corpus_id == corpus.id)))
        runs = {r.question: (r.state.value, r.answer, r.citations, r.strategy,
                             [(e.seq, e.kind) for e in s.scalars(select(RunEvent).where(
                                 RunEvent.run_id == r.id).order_by(RunEvent.seq))],
                             [(f.rating, f.comment) for f in s.scalars(select(Feedback).where(
                                 Feedback.run_id == r.id))])
                for r in s.scalars(select(Run).where(Run.corpus_id == corpus.id))}
        totals, corpus_id = (corpus.document_count, corpus.token_count), corpus.id
    hits = [h.metadata["path"] for h in get_keyword_index().search(corpus_id, f"{MARKER}2", 3)]
    vectors = set(get_vector_store().get_embeddings(corpus_id, sorted(chunks)))
    return {"docs": docs, "chunks": chunks, "runs": runs, "totals": totals, "hits": hits,
            "vectors": vectors, "corpus_id": corpus_id}


def test_export_then_import_into_a_fresh_deployment_keeps_everything(
    corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import chunk_id
    from corral.platform.cli.app import app

    _ingest(tmp_path / "kb")
    _add_runs()
    before = _snapshot()
    out = tmp_path / "backup.jsonl.gz"
    exported = CliRunner().invoke(app, ["export", "default", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "3 documents" in exported.output and "2 runs" in exported.output
    with gzip.open(out, "rt") as stream:
        lines = [json.loads(x) for x in stream]
    assert next(x["type"] for x in lines) == "header" and lines[-1]["type"] == "end"
    assert "key_id" not in json.dumps([x for x in lines if x["type"] == "run"])

    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "elsewhere"))  # a new, empty deployment
    clear_caches()
    imported = CliRunner().invoke(app, ["import", str(out)])
    assert imported.exit_code == 0, imported.output
    after = _snapshot()
    assert after["docs"] == before["docs"] and after["totals"] == before["totals"]
    # The chunk ids a clean ingest of the same files into the new corpus gives.
    rows = {cid: None for cid in after["chunks"]}
    assert len(rows) == len(before["chunks"])
    from corral.core.db import Chunk, Document, session_scope

    with session_scope() as s:
        expected = {chunk_id(after["corpus_id"], path, digest, ordinal) for path, digest, ordinal in
                    s.execute(select(Document.path, Document.content_hash, Chunk.ordinal).join(Chunk))}
    assert after["chunks"] == expected
    assert after["vectors"] == after["chunks"]  # every vector rebuilt, none missing
    assert after["hits"] == ["kb/note2.md"]
    answered = after["runs"]["What is the code of note 1?"]
    assert answered == before["runs"]["What is the code of note 1?"]
    assert after["runs"]["Still waiting?"][0] == "failed"  # nothing would ever run it here

    again = CliRunner().invoke(app, ["import", str(out)])  # nothing is overwritten
    assert again.exit_code != 0 and "already has a corpus named 'kb'" in again.output
    other = CliRunner().invoke(app, ["import", str(out), "--workspace", "team-b"])
    assert other.exit_code == 0, other.output


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda lines: lines[:-1], "cut short"),
    (lambda lines: ["{not json", *lines[1:]], "line 1: not JSON"),
    (lambda lines: [lines[0].replace("corral-export", "other"), *lines[1:]], "not a Corral export"),
    (lambda lines: [*lines[:1], '{"type": "document", "corpus": "nope"}', *lines[1:]],
     "not declared"),
    (lambda lines: [x.replace('"ordinal":0', '"ordinal":"zero"') for x in lines], "ordinal must be int"),
    (lambda lines: [x.replace('"rating":1', '"rating":5') for x in lines], "rating must be"),
    (lambda lines: [x.replace('"type":"run",', '"type":"run","evil":1,') for x in lines],
     "unknown fields ['evil']"),
    (lambda lines: [*lines[:1], '{"type": "corpus", "name": "../etc"}', *lines[1:]], "corpus"),
])
def test_a_bad_export_imports_nothing_and_says_why(
    corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutate: Any, message: str
) -> None:
    from corral.core.db import Corpus, Workspace, session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.errors import InvalidInputError
    from corral.platform.backup import export_workspace, import_workspace

    _ingest(tmp_path / "kb")
    _add_runs()
    good = tmp_path / "good.jsonl"
    export_workspace("default", good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(mutate(good.read_text().splitlines())) + "\n")
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "elsewhere"))
    clear_caches()
    ensure_schema()
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        import_workspace(bad)
    with session_scope() as s:
        assert s.scalars(select(Corpus)).all() == []
        assert [w.name for w in s.scalars(select(Workspace))] in ([], ["default"])


@pytest.mark.services
def test_db_upgrade_of_a_database_populated_at_the_previous_release_keeps_its_data(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, corral_env: Path
) -> None:
    from corral.core.db import migrate
    from corral.platform.cli.app import app

    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    migrate.upgrade(url, "0003")  # the previous release's head
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # rows as that release wrote them, in its own columns
            ws = conn.execute(sa.text("INSERT INTO workspace (name, created_at) VALUES ('default', now()) "
                                      "RETURNING id")).scalar_one()
            corpus = conn.execute(sa.text(
                "INSERT INTO corpus (workspace_id, name, token_count, document_count, created_at) "
                "VALUES (:ws, 'kb', 42, 1, now()) RETURNING id"), {"ws": ws}).scalar_one()
            doc = conn.execute(sa.text(
                "INSERT INTO document (corpus_id, path, kind, content_hash, size_bytes, line_count, "
                "token_count, status, created_at, updated_at) VALUES (:c, 'kb/a.md', 'markdown', "
                "'h', 10, 1, 42, 'indexed', now(), now()) RETURNING id"), {"c": corpus}).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO chunk (id, document_id, ordinal, start_line, end_line, char_start, "
                "char_end, content_hash, token_count, text) VALUES ('c1', :d, 0, 1, 1, 0, 10, 'h', 42, "
                f"'{MARKER} text')"), {"d": doc})
            run_cols = {c["name"] for c in sa.inspect(conn).get_columns("run")}
            assert "heartbeat_at" not in run_cols
            conn.execute(sa.text(
                "INSERT INTO run (id, corpus_id, state, params, cancel_requested, prompt_tokens, "
                "completion_tokens, question, strategy, strategy_reason, decision, estimated_tokens, "
                "actual_tokens, model, steps, answer, citations, created_at) VALUES ('r1', :c, "
                "'succeeded', '{}', false, 1, 2, 'q?', 'stuff', 'small', '{}', 3, 3, 'm', '[]', "
                "'an answer', '[]', now())"), {"c": corpus})
            conn.execute(sa.text("INSERT INTO feedback (run_id, rating, comment, created_at) "
                                 "VALUES ('r1', 1, 'good', now())"))
        monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
        clear_caches()
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(url) == migrate.head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT token_count FROM corpus WHERE name = 'kb'")).scalar() == 42
            text = conn.execute(sa.text("SELECT text FROM chunk WHERE id = 'c1'")).scalar()
            assert text == f"{MARKER} text"
            assert conn.execute(sa.text("SELECT answer, heartbeat_at FROM run WHERE id = 'r1'")).one() == (
                "an answer", None)
            assert conn.execute(sa.text("SELECT comment FROM feedback")).scalar() == "good"
        # The downgrade path the README documents: back to the previous release, data kept.
        down = CliRunner().invoke(app, ["db", "downgrade", "0003"])
        assert down.exit_code == 0, down.output
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT answer FROM run WHERE id = 'r1'")).scalar() == "an answer"
    finally:
        engine.dispose()


def test_the_images_of_ocr_read_documents_travel_with_the_export(
    corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scanned receipt's stored image and its chunks' boxes come back after an import, so the
    citations of its text still show the image with the box."""
    from PIL import Image, ImageDraw, ImageFont

    from corral.core.db import Chunk, Document, DocumentImage, session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.ingestion.ingest import ingest_now
    from corral.ingestion.sources import PathSpec
    from corral.platform.cli.app import app

    ensure_schema()
    root = tmp_path / "scans"
    root.mkdir()
    image = Image.new("RGB", (520, 90), "white")
    ImageDraw.Draw(image).text((12, 24), "Receipt total 4217 kroner", fill="black",
                               font=ImageFont.load_default(size=30))
    image.save(root / "receipt.png")
    ingest_now("scans", PathSpec(root))

    def stored() -> tuple[list[tuple[str, str | None, int, bytes]], list[tuple[str | None, Any]]]:
        with session_scope() as s:
            images = [(i.ref, i.mime, i.width, i.data) for i in s.scalars(
                select(DocumentImage).join(Document).where(Document.path.like("%receipt.png")))]
            chunks = [(c.image_ref, c.bbox) for c in s.scalars(
                select(Chunk).join(Document).where(Document.path.like("%receipt.png")))]
        return images, chunks

    images, chunks = stored()
    assert images and chunks and all(ref is not None and box for ref, box in chunks)
    out = tmp_path / "scans.jsonl"
    assert CliRunner().invoke(app, ["export", "default", "--out", str(out)]).exit_code == 0

    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "elsewhere"))
    clear_caches()
    imported = CliRunner().invoke(app, ["import", str(out)])
    assert imported.exit_code == 0, imported.output
    assert stored() == (images, chunks)

    # An image whose data is not base64 is refused with where it was, and nothing is imported.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text().replace('"data":"', '"data":"!!not base64', 1))
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "third"))
    clear_caches()
    refused = CliRunner().invoke(app, ["import", str(bad)])
    assert refused.exit_code != 0 and "image 0: data has an invalid value" in refused.output
