"""Chunks are an exact partition of the document with correct 1-based line ranges."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.ingestion.chunking import split_document
from corral.ingestion.parsing import FileKind

PY = FileKind("code", "python")


def test_real_source_file_splits_along_definitions_with_line_ranges() -> None:
    text = (Path(json.__file__).parent / "decoder.py").read_text()
    spans = split_document(text, PY, 800)
    assert "".join(s.text for s in spans) == text
    assert [s.ordinal for s in spans] == list(range(len(spans)))
    lines = text.split("\n")
    for s in spans:
        body = s.text.strip("\n")
        assert lines[s.start_line - 1].strip() == body.split("\n")[0].strip()
        assert lines[s.end_line - 1].strip() == body.split("\n")[-1].strip()
    assert "JSONDecoder" in {s.symbol for s in spans}
    assert all(len(s.text) <= 1200 for s in spans)


def test_markdown_splits_on_headings() -> None:
    text = "# One\n\n" + "alpha " * 100 + "\n\n## Two\n\n" + "beta " * 100 + "\n"
    spans = split_document(text, FileKind("markdown", "markdown"), 700)
    assert "".join(s.text for s in spans) == text
    assert any(s.text.lstrip().startswith("## Two") for s in spans)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\tdef class:()é中"), max_size=3000),
       st.sampled_from([FileKind("text"), PY, FileKind("markdown", "markdown")]))
def test_any_text_partitions_exactly(text: str, kind: FileKind) -> None:
    spans = split_document(text, kind, 120)
    assert "".join(s.text for s in spans) == text
    for a, b in itertools.pairwise(spans):
        assert a.char_end == b.char_start and a.start_line <= a.end_line <= b.start_line
