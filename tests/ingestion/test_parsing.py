"""Reading files: every kind of bad file gets a clear reason, and nothing huge is read into memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.core.db import DocumentStatus
from corral.ingestion.parsing import (
    Extracted,
    FileKind,
    ParsedDocument,
    Rejected,
    classify,
    parse_document,
    read_document,
    register_parser,
)
from corral.ingestion.sources import SourceDocument

LIMIT = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind", "language"),
    [("a.py", "code", "python"), ("b.ts", "code", "ts"), ("README", "text", None),
     ("notes.md", "markdown", "markdown"), ("x.txt", "text", None), ("p.png", "image", None),
     ("Makefile", "text", None), ("data.weird", "unknown", None), ("c.tsx", "code", "tsx"),
     ("d.rst", "rst", None), ("e.HTML", "html", None), ("f.pdf", "pdf", None),
     ("g.docx", "docx", None), ("h.ipynb", "notebook", None), ("i.doc", "binary", None),
     ("j.JPEG", "image", None), ("k.ico", "binary", None)],
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
    f = tmp_path / "song.mp3"
    f.write_bytes(b"ID3\x04\x00")
    got = read_document(f, LIMIT)
    assert isinstance(got, Rejected) and got.status is DocumentStatus.SKIPPED and ".mp3" in got.reason


# --- formats ----------------------------------------------------------------------------------


def _pdf(pages: list[str], title: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for body in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, body)
    return bytes(pdf.output())


def test_pdf_text_keeps_page_starts_and_title(tmp_path: Path) -> None:
    f = tmp_path / "report.pdf"
    f.write_bytes(_pdf(["Apples grow on trees.", "Pears are sweet.", "Plums are purple."], "Fruit"))
    doc = read_document(f, LIMIT)
    assert isinstance(doc, ParsedDocument)
    assert doc.kind.kind == "pdf" and doc.title == "Fruit" and doc.page_count == 3
    assert doc.pages[0] == 0
    for n, word in enumerate(["Apples", "Pears", "Plums"]):
        end = doc.pages[n + 1] if n + 1 < len(doc.pages) else len(doc.text)
        assert word in doc.text[doc.pages[n] : end]


def test_docx_headings_lists_and_tables_in_order(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Handbook"
    d.add_heading("Intro", level=1)
    d.add_paragraph("Hello world.")
    d.add_paragraph("first item", style="List Bullet")
    table = d.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "key", "value"
    d.add_heading("Details", level=2)
    d.save(tmp_path / "h.docx")
    doc = read_document(tmp_path / "h.docx", LIMIT)
    assert isinstance(doc, ParsedDocument) and doc.title == "Handbook"
    assert doc.text == "## Intro\n\nHello world.\n\n- first item\n\n| key | value |\n\n### Details\n"


def test_notebook_cells_in_order_without_outputs(tmp_path: Path) -> None:
    nb = {"nbformat": 4, "metadata": {"kernelspec": {"language": "python"}}, "cells": [
        {"cell_type": "markdown", "source": ["# Analysis\n", "We load data."]},
        {"cell_type": "code", "source": "x = 1\nprint(x)",
         "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo" * 1000}}]},
        {"cell_type": "raw", "source": "raw text"},
    ]}
    f = tmp_path / "a.ipynb"
    f.write_text(json.dumps(nb))
    doc = read_document(f, LIMIT)
    assert isinstance(doc, ParsedDocument)
    assert doc.kind.kind == "notebook" and doc.kind.language == "python" and doc.title == "Analysis"
    assert doc.text == "# Analysis\nWe load data.\n\n```python\nx = 1\nprint(x)\n```\n\nraw text\n"


def test_html_main_text_without_boilerplate(tmp_path: Path) -> None:
    f = tmp_path / "page.html"
    f.write_text(
        "<html><head><title>Fruit</title><script>var tracker = 1;</script></head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About us</a></nav>"
        "<article><h1>Growing pears</h1><p>" + "Pears need sun and patience to grow well. " * 8
        + "</p><h2>Soil</h2><p>" + "Loamy soil drains and holds water. " * 8 + "</p></article>"
        "<footer>Copyright 2026 Fruit Inc. All rights reserved.</footer></body></html>"
    )
    doc = read_document(f, LIMIT)
    assert isinstance(doc, ParsedDocument) and doc.kind.kind == "html"
    assert "# Growing pears" in doc.text and "## Soil" in doc.text and "Loamy soil" in doc.text
    assert "tracker" not in doc.text and "About us" not in doc.text and "Copyright" not in doc.text


def test_html_fragment_without_article_keeps_its_text(tmp_path: Path) -> None:
    f = tmp_path / "frag.htm"
    f.write_text("<p>tiny note</p><script>evil()</script>")
    doc = read_document(f, LIMIT)
    assert isinstance(doc, ParsedDocument) and "tiny note" in doc.text and "evil" not in doc.text


def test_rst_and_markdown_titles(tmp_path: Path) -> None:
    (tmp_path / "a.rst").write_text("=======\nManual\n=======\n\nBody.\n")
    (tmp_path / "b.md").write_text("Some intro\n\n# Real Title\n\ntext\n")
    rst, md = read_document(tmp_path / "a.rst", LIMIT), read_document(tmp_path / "b.md", LIMIT)
    assert isinstance(rst, ParsedDocument) and rst.kind.kind == "rst" and rst.title == "Manual"
    assert isinstance(md, ParsedDocument) and md.title == "Real Title"


def test_parse_document_reads_through_the_source_document(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def f():\n    return 1\n")
    doc = parse_document(SourceDocument.from_file(f, "repo/src/x.py"), LIMIT)
    assert isinstance(doc, ParsedDocument) and doc.kind == FileKind("code", "python")


def test_a_registered_parser_replaces_the_builtin_one(tmp_path: Path) -> None:
    from corral.ingestion.parsing.registry import _PARSERS, get_parser

    get_parser("html")
    saved = _PARSERS["html"]
    try:
        register_parser("html", lambda data, kind: Extracted(text="custom\n"))
        f = tmp_path / "p.html"
        f.write_text("<p>x</p>")
        doc = read_document(f, LIMIT)
        assert isinstance(doc, ParsedDocument) and doc.text == "custom\n"
    finally:
        register_parser("html", saved)


def test_html_encodings_utf8_undeclared_and_latin1_declared(tmp_path: Path) -> None:
    body = "<p>" + "Crème brûlée is a dessert of rich custard topped with caramel. " * 6 + "</p>"
    (tmp_path / "u.html").write_bytes(f"<html><body><article>{body}</article></body></html>".encode())
    (tmp_path / "l.html").write_bytes(
        f'<html><head><meta charset="iso-8859-1"></head><body><article>{body}</article></body></html>'
        .encode("latin-1")
    )
    for name in ("u.html", "l.html"):
        doc = read_document(tmp_path / name, LIMIT)
        assert isinstance(doc, ParsedDocument) and "Crème brûlée" in doc.text, name
