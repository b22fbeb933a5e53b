"""Hostile and broken input at the source and parser level: each bad document gets a clear reason
of its own, nothing huge is read into memory, and every good document beside it still parses."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.db import DocumentStatus
from corral.core.errors import InvalidInputError
from corral.ingestion.chunking import chunk_document
from corral.ingestion.parsing import ParsedDocument, Rejected, parse_document
from corral.ingestion.sources import (
    ArchiveLimits,
    ArchiveSource,
    FolderSource,
    SourceDocument,
    SourceProblem,
    open_source,
)

LIMIT = 1024 * 1024


def _pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _outcomes(source: FolderSource | ArchiveSource) -> dict[str, ParsedDocument | Rejected | SourceProblem]:
    out: dict[str, ParsedDocument | Rejected | SourceProblem] = {}
    for batch in source.iter_batches(4):
        for item in batch:
            out[item.path] = parse_document(item, LIMIT) if isinstance(item, SourceDocument) else item
    return out


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from corral.core.config import get_settings

    for key in list(os.environ):
        if key.startswith("CORRAL_") and not key.startswith(("CORRAL_TEST_", "CORRAL_REQUIRE")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_every_bad_file_in_a_folder_gets_its_own_reason(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    good_pdf = _pdf("Apples are red.")
    (root / "corrupt.pdf").write_bytes(good_pdf[: len(good_pdf) // 2])
    (root / "evil.py").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    with (root / "huge.txt").open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: no disk, and it must cost no memory either
    (root / "latin.txt").write_bytes(b"caf\xe9 au lait\n")
    (root / "sub" / "loop").symlink_to(root / "sub")
    (tmp_path / "private.txt").write_text("secret")
    (root / "escape.txt").symlink_to(tmp_path / "private.txt")
    (root / "good.md").write_text("# Good\n\nStill indexed.\n")
    (root / "good.py").write_text("def ok():\n    return 1\n")
    (root / "report.pdf").write_bytes(good_pdf)

    tracemalloc.start()
    got = _outcomes(FolderSource(root))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # the 200 MB file was never read

    def rejected(path: str) -> Rejected:
        item = got[f"corpus/{path}"]
        assert isinstance(item, Rejected), item
        return item

    assert rejected("corrupt.pdf").status is DocumentStatus.FAILED
    assert rejected("corrupt.pdf").reason.startswith("corrupt PDF")
    assert rejected("evil.py").status is DocumentStatus.SKIPPED and "binary" in rejected("evil.py").reason
    huge = rejected("huge.txt")
    assert huge.status is DocumentStatus.FAILED and "200.0 MB, over the 1.0 MB limit" in huge.reason
    assert "invalid UTF-8 at byte 3 (0xe9)" in rejected("latin.txt").reason
    loop = got["corpus/sub/loop"]
    assert isinstance(loop, SourceProblem) and ("loop" in loop.reason or "not followed" in loop.reason)
    escape = got["corpus/escape.txt"]
    assert isinstance(escape, SourceProblem) and "outside" in escape.reason
    for good in ("good.md", "good.py", "report.pdf"):
        parsed = got[f"corpus/{good}"]
        assert isinstance(parsed, ParsedDocument), parsed
        assert chunk_document(parsed, 1000)


def test_huge_file_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    f = tmp_path / "huge.py"
    with f.open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)
    opened: list[str] = []

    class Counting(SourceDocument):
        def open(self):  # type: ignore[no-untyped-def]
            opened.append(self.path)
            return super().open()

    doc = Counting("huge.py", f, f.stat().st_size)
    got = parse_document(doc, LIMIT)
    assert isinstance(got, Rejected) and got.status is DocumentStatus.FAILED
    assert opened == []


def test_zip_with_traversal_entries_and_a_bomb_indexes_the_rest(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../../etc/cron.d/evil", b"* * * * * root rm -rf /")
        zf.writestr("..\\windows.txt", b"escape")
        zf.writestr("bomb.txt", b"0" * (20 * 1024 * 1024))
        zf.writestr("docs/readme.md", b"# Readme\n\nfine\n")
    limits = ArchiveLimits(max_file_bytes=50 * 1024 * 1024, max_total_bytes=100 * 1024 * 1024)
    got = _outcomes(ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=limits))
    problems = {k: v for k, v in got.items() if isinstance(v, SourceProblem)}
    assert len([p for p in problems.values() if "unsafe path" in p.reason]) == 2
    assert "zip bomb" in problems["upload/bomb.txt"].reason
    assert isinstance(got["upload/docs/readme.md"], ParsedDocument)
    assert not list(tmp_path.rglob("evil")) and not list(tmp_path.rglob("windows.txt"))


@pytest.mark.parametrize("uri", ["ext::sh -c 'touch /tmp/pwned'", "git://example.com/x.git",
                                 "fd::3", "ftp://example.com/x.git"])
def test_git_url_with_a_disallowed_scheme_is_refused(uri: str, data_dir: Path) -> None:
    with pytest.raises(InvalidInputError, match="not allowed"):
        open_source("git", uri)
    assert not (data_dir / "cache" / "git").exists() or not list((data_dir / "cache" / "git").iterdir())


def _docx_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"<" + b"a" * (300 * 1024 * 1024 // 100) * 100 + b">")
    return buf.getvalue()


@pytest.mark.parametrize(("name", "data", "status", "reason"), [
    ("bad.ipynb", b"{not json", DocumentStatus.FAILED, "invalid JSON at line 1"),
    ("list.ipynb", b"[1, 2]", DocumentStatus.FAILED, "not an object"),
    ("cells.ipynb", b'{"cells": "nope"}', DocumentStatus.FAILED, "no list of cells"),
    ("deep.ipynb", b"[" * 100_000 + b"]" * 100_000, DocumentStatus.FAILED, "nested too deeply"),
    ("empty.ipynb", b'{"cells": []}', DocumentStatus.SKIPPED, "no text found"),
    ("junk.docx", b"PK\x03\x04 this is not really a zip", DocumentStatus.FAILED, "corrupt DOCX"),
    ("bomb.docx", _docx_bomb(), DocumentStatus.FAILED, "zip bomb"),
    ("nopdf.pdf", b"<html>not a pdf</html>", DocumentStatus.FAILED, "%PDF- header"),
    ("blank.html", b"<html><body><script>x()</script></body></html>", DocumentStatus.SKIPPED, "no text"),
    ("utf16.txt", "hello".encode("utf-16"), DocumentStatus.SKIPPED, "binary content"),
    ("bad.md", b"# ok\n\xff\xfe broken", DocumentStatus.FAILED, "invalid UTF-8 at byte 5"),
])
def test_hostile_documents_fail_with_a_clear_reason(
    tmp_path: Path, name: str, data: bytes, status: DocumentStatus, reason: str
) -> None:
    f = tmp_path / name
    f.write_bytes(data)
    got = parse_document(SourceDocument.from_file(f, name), 64 * 1024 * 1024)
    assert isinstance(got, Rejected), got
    assert got.status is status and reason in got.reason, got.reason


def test_garbage_and_unclosed_html_parse_without_errors(tmp_path: Path) -> None:
    f = tmp_path / "garbage.html"
    f.write_bytes(b"<<<>>><div><p>" * 5000 + b"hidden" + b"</table></html>" * 100)
    got = parse_document(SourceDocument.from_file(f, f.name), LIMIT)
    assert isinstance(got, ParsedDocument | Rejected)  # 5000 nested tags: whatever lxml keeps, no crash
    f = tmp_path / "unclosed.html"
    f.write_bytes(b"".join(b"<div><p>paragraph %d about <b>topic %d" % (i, i) for i in range(50))
                  + "visible café words".encode())
    got = parse_document(SourceDocument.from_file(f, f.name), LIMIT)
    assert isinstance(got, ParsedDocument) and "visible café words" in got.text


def test_pdf_with_a_password_is_refused(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "secret")
    f = tmp_path / "locked.pdf"
    f.write_bytes(bytes(pdf.output()))
    got = parse_document(SourceDocument.from_file(f, f.name), LIMIT)
    assert isinstance(got, Rejected) and "encrypted" in got.reason


def test_notebook_cells_with_odd_types_are_skipped_not_fatal(tmp_path: Path) -> None:
    nb = {"cells": [None, 3, {"cell_type": "code", "source": 5}, {"cell_type": "markdown",
                                                                  "source": ["ok ", 7, "text"]}]}
    f = tmp_path / "odd.ipynb"
    f.write_text(json.dumps(nb))
    got = parse_document(SourceDocument.from_file(f, f.name), LIMIT)
    assert isinstance(got, ParsedDocument) and got.text == "ok text\n"
