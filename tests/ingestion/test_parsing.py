"""Reading files: every kind of bad file gets a clear reason, and nothing huge is read into memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.db import DocumentStatus
from corral.ingestion.parsing import ParsedDocument, Rejected, classify, read_document

LIMIT = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind", "language"),
    [("a.py", "code", "python"), ("b.ts", "code", "ts"), ("README", "text", None),
     ("notes.md", "markdown", "markdown"), ("x.txt", "text", None), ("p.png", "binary", None),
     ("Makefile", "text", None), ("data.weird", "unknown", None)],
)
def test_classify_by_name(name: str, kind: str, language: str | None) -> None:
    found = classify(Path(name))
    assert (found.kind, found.language) == (kind, language)


def test_text_is_decoded_and_line_endings_normalised(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    doc = read_document(f, LIMIT)
    assert isinstance(doc, ParsedDocument)
    assert doc.text == "one\ntwo\nthree\n"
    assert len(doc.content_hash) == 64


def test_binary_named_py_is_skipped_with_reason(tmp_path: Path) -> None:
    f = tmp_path / "evil.py"
    f.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    got = read_document(f, LIMIT)
    assert isinstance(got, Rejected)
    assert got.status is DocumentStatus.SKIPPED and "binary" in got.reason


def test_invalid_utf8_fails_with_the_byte_offset(tmp_path: Path) -> None:
    f = tmp_path / "latin.txt"
    f.write_bytes(b"caf" + b"\xe9 au lait\n")
    got = read_document(f, LIMIT)
    assert isinstance(got, Rejected)
    assert got.status is DocumentStatus.FAILED
    assert "invalid UTF-8 at byte 3" in got.reason


def test_file_over_the_limit_is_rejected_without_being_read(tmp_path: Path) -> None:
    f = tmp_path / "huge.txt"
    with f.open("wb") as fh:  # sparse 200 MB: costs no disk, and must cost no memory either
        fh.truncate(200 * 1024 * 1024)
    import tracemalloc

    tracemalloc.start()
    got = read_document(f, LIMIT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(got, Rejected)
    assert got.status is DocumentStatus.FAILED and "200.0 MB, over the 1.0 MB limit" in got.reason
    assert peak < 1024 * 1024


def test_empty_and_whitespace_files_are_skipped(tmp_path: Path) -> None:
    f = tmp_path / "blank.md"
    f.write_text("  \n\n")
    got = read_document(f, LIMIT)
    assert isinstance(got, Rejected) and got.reason == "empty file"


def test_known_binary_extension_is_skipped_without_sniffing(tmp_path: Path) -> None:
    f = tmp_path / "pic.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n")
    got = read_document(f, LIMIT)
    assert isinstance(got, Rejected) and got.status is DocumentStatus.SKIPPED and ".png" in got.reason
