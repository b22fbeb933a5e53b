"""Ingesting folders: a user points Corral at files and gets every good file indexed, every bad one
explained, and re-runs that only touch what changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from corral.core.db import Chunk, Document, DocumentStatus, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.errors import InvalidInputError
from corral.core.index import get_vector_store
from corral.core.services import get_corpus
from corral.ingestion.ingest import ingest_now as ingest_in_process


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "app.py").write_text(
        "def greet(name):\n    return f'hello {name}'\n\n\nclass Store:\n    pass\n"
    )
    (root / "README.md").write_text("# Proj\n\nThe answer to everything is forty-two.\n")
    (root / "notes.txt").write_text("Shipping happens on Tuesdays.\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "fake.py").write_bytes(b"\x00\x01\x02binary")
    (root / "latin.txt").write_bytes(b"caf\xe9\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    return root


def _chunk_ids(corpus: str) -> set[str]:
    with session_scope() as s:
        c = get_corpus(s, corpus)
        return set(s.scalars(select(Chunk.id).join(Document).where(Document.corpus_id == c.id)))


def test_folder_is_indexed_and_bad_files_are_explained(corral_env: Path, project: Path) -> None:
    ensure_schema()
    report = ingest_in_process("proj", project)
    assert (report.indexed, report.skipped, report.failed) == (3, 2, 2)
    reasons = {p.path: (p.status, p.reason) for p in report.problems}
    # A PNG header with nothing after it: images are read (by OCR), and this one cannot be.
    assert reasons["proj/logo.png"][0] == "failed" and "image" in reasons["proj/logo.png"][1]
    assert reasons["proj/fake.py"] == ("skipped", "binary content (not text) is not indexed")
    assert reasons["proj/latin.txt"][0] == "failed" and "invalid UTF-8" in reasons["proj/latin.txt"][1]
    # The VCS folder is skipped as one item with its reason; nothing inside it is read.
    assert reasons["proj/.git"] == ("skipped", "version-control metadata is not indexed")
    assert not any(p.startswith("proj/.git/") for p in reasons)

    with session_scope() as s:
        corpus = get_corpus(s, "proj")
        docs = {d.path: d for d in s.scalars(select(Document).where(Document.corpus_id == corpus.id))}
        app = docs["proj/pkg/app.py"]
        assert app.status is DocumentStatus.INDEXED and app.language == "python"
        assert app.token_count > 10 and app.line_count == 6
        assert corpus.token_count == sum(d.token_count for d in docs.values()) > 0
        assert corpus.document_count == 3
        assert docs["proj/latin.txt"].error and docs["proj/latin.txt"].status is DocumentStatus.FAILED
        corpus_id = corpus.id
    assert get_vector_store().count(corpus_id) == len(_chunk_ids("proj")) == report.chunks


def test_reingest_touches_only_what_changed(corral_env: Path, project: Path) -> None:
    ensure_schema()
    first = ingest_in_process("proj", project)
    ids_before = _chunk_ids("proj")
    again = ingest_in_process("proj", project)
    assert (again.indexed, again.unchanged, again.chunks) == (0, 3, 0)
    assert _chunk_ids("proj") == ids_before

    (project / "notes.txt").write_text("Shipping happens on Fridays now.\n")
    (project / "README.md").unlink()
    third = ingest_in_process("proj", project)
    assert (third.indexed, third.unchanged, third.removed) == (1, 1, 1)
    ids_after = _chunk_ids("proj")
    with session_scope() as s:
        corpus_id = get_corpus(s, "proj").id
        paths = set(s.scalars(select(Document.path).where(Document.corpus_id == corpus_id)))
    assert "proj/README.md" not in paths
    assert get_vector_store().count(corpus_id) == len(ids_after)
    assert first.chunks == len(ids_before)


def test_missing_path_is_a_clear_error(corral_env: Path, tmp_path: Path) -> None:
    ensure_schema()
    with pytest.raises(InvalidInputError, match="path does not exist"):
        ingest_in_process("proj", tmp_path / "nope")


def test_empty_folder_indexes_nothing_and_says_so(corral_env: Path, tmp_path: Path) -> None:
    ensure_schema()
    (tmp_path / "empty").mkdir()
    report = ingest_in_process("empty", tmp_path / "empty")
    assert report.indexed == report.failed == report.skipped == 0
    assert report.corpus_documents == 0


def test_symlinks_out_of_the_folder_and_loops_are_not_followed(
    corral_env: Path, tmp_path: Path
) -> None:
    ensure_schema()
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_text("fine\n")
    os.symlink(secret, root / "leak.txt")
    os.symlink(root, root / "sub" / "loop")
    report = ingest_in_process("links", root)
    reasons = {p.path: p.reason for p in report.problems}
    assert reasons["src/leak.txt"] == "symlink points outside the ingested folder"
    assert reasons["src/sub/loop"] in ("symlink loop", "symlinked folder is not followed")
    assert report.indexed == 1
    with session_scope() as s:
        texts = "".join(s.scalars(select(Chunk.text)))
    assert "hunter2" not in texts


def test_single_file_can_be_ingested(corral_env: Path, project: Path) -> None:
    ensure_schema()
    report = ingest_in_process("one", project / "pkg" / "app.py")
    assert report.indexed == 1 and report.corpus_documents == 1
