"""Chunks are an exact partition of the document with correct 1-based line ranges."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
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


# --- code-aware chunking (tree-sitter) --------------------------------------------------------

SAMPLES: dict[str, tuple[str, str, set[str]]] = {
    "python": ("python", "class Foo:\n    x = 1\n\n    def bar(self):\n        return 1\n\n"
               "    @property\n    def baz(self):\n        return 2\n\n\ndef top():\n    pass\n",
               {"Foo", "Foo.bar", "Foo.baz", "top"}),
    "javascript": ("js", "class A {\n  m() {\n    return 1;\n  }\n}\nfunction f() {\n  return 2;\n}\n"
                   "const g = () => {\n  return 3;\n};\nexport function h() {\n}\n",
                   {"A", "A.m", "f", "g", "h"}),
    "typescript": ("ts", "interface I {\n  x: number;\n}\nexport class C implements I {\n  x = 1;\n"
                   "  m(): void {\n  }\n}\nenum E {\n A,\n}\nnamespace N {\n  export function f() {}\n}\n",
                   {"I", "C", "C.m", "E", "N", "N.f"}),
    "tsx": ("tsx", "export function App() {\n  return <div>hi</div>;\n}\n", {"App"}),
    "java": ("java", "package p;\npublic class A {\n  @Override\n  public void m() {\n  }\n  A() {\n"
             "  }\n}\ninterface I {\n}\n", {"A", "A.m", "A.A", "I"}),
    "go": ("go", "package main\n// Foo does.\nfunc Foo() {\n}\ntype S struct {\n  x int\n}\n"
           "func (s *S) M() {\n}\n", {"Foo", "S", "S.M"}),
    "rust": ("rust", "/// doc\n#[derive(Debug)]\nstruct S {\n  x: i32,\n}\nimpl S {\n  fn m(&self) {\n"
             "  }\n}\nfn f() {\n}\ntrait T {\n  fn t(&self);\n}\nmod m {\n  fn g() {}\n}\n",
             {"S", "S.m", "f", "T", "m", "m.g"}),
    "c": ("c", "struct s {\n  int x;\n};\nstatic int *f(int a) {\n  return 0;\n}\n", {"s", "f"}),
    "cpp": ("cpp", "namespace n {\nclass A {\n public:\n  void m() {\n  }\n};\n}\n"
            "template <typename T>\nT f(T x) {\n  return x;\n}\n", {"n", "n.A", "n.A.m", "f"}),
    "csharp": ("csharp", "namespace N {\n  public class C {\n    public void M() {\n    }\n  }\n}\n",
               {"N", "N.C", "N.C.M"}),
    "ruby": ("ruby", "module M\n  class C\n    def m\n    end\n  end\nend\ndef f\nend\n",
             {"M", "M.C", "M.C.m", "f"}),
    "php": ("php", "<?php\nfunction f() {\n}\nclass C {\n  public function m() {\n  }\n}\n",
            {"f", "C", "C.m"}),
    "kotlin": ("kotlin", "class C {\n  fun m() {\n  }\n}\nfun f() {\n}\n", {"C", "C.m", "f"}),
    "scala": ("scala", "class C {\n  def m(): Int = {\n    1\n  }\n}\ntrait T {\n}\n", {"C", "C.m", "T"}),
    "swift": ("swift", "class C {\n  func m() {\n  }\n}\nprotocol P {\n}\nfunc f() {\n}\n",
              {"C", "C.m", "P", "f"}),
    "bash": ("shell", "f() {\n  echo hi\n}\nfunction g {\n  echo\n}\n", {"f", "g"}),
    "lua": ("lua", "local function f()\nend\nfunction M.g()\nend\n", {"f", "M.g"}),
}


@pytest.mark.parametrize("grammar", sorted(SAMPLES))
def test_code_chunks_follow_definitions_in_many_languages(grammar: str) -> None:
    language, text, expected = SAMPLES[grammar]
    spans = split_document(text, FileKind("code", language), 20)  # tiny budget: every unit splits
    assert "".join(s.text for s in spans) == text
    assert expected <= {s.symbol for s in spans}
    assert len(SAMPLES) >= 15


def test_code_chunk_carries_kind_parent_and_enclosing_unit_lines() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(40))
    text = f"import os\n\n\nclass Foo:\n    def small(self):\n        return 1\n\n    def big(self):\n{body}"
    spans = split_document(text, PY, 300)
    assert "".join(s.text for s in spans) == text
    small = next(s for s in spans if s.symbol == "Foo.small")
    assert small.symbol_kind == "method" and small.parent == "Foo"
    assert (small.unit_start_line, small.unit_end_line) == (4, text.count("\n"))
    pieces = [s for s in spans if s.symbol == "Foo.big"]
    assert len(pieces) >= 2  # too big for one chunk: split inside, every piece knows its function
    assert all(p.parent == "Foo.big" and p.unit_start_line == 8 for p in pieces)
    top = spans[0]
    assert top.parent is None and top.unit_start_line == 1
    assert all(len(s.text) <= 300 for s in spans)


def test_definition_chunk_starts_at_its_doc_comment() -> None:
    text = "package main\n\n// Foo does things.\n// Really.\nfunc Foo() {\n" + "\tx := 1\n" * 30 + "}\n"
    spans = split_document(text, FileKind("code", "go"), 120)
    first_foo = next(s for s in spans if s.symbol == "Foo")
    assert first_foo.text.lstrip().startswith("// Foo does things.")


def test_huge_line_and_deep_nesting_still_partition() -> None:
    minified = "var a=" + "[" * 3000 + "]" * 3000 + ";" + "f(1);" * 4000 + "\n"
    spans = split_document(minified, FileKind("code", "js"), 500)
    assert "".join(s.text for s in spans) == minified
    assert max(len(s.text) for s in spans) <= 500
    nested = "".join("    " * i + "if x:\n" for i in range(200)) + "    " * 200 + "pass\n"
    spans = split_document(nested, PY, 400)
    assert "".join(s.text for s in spans) == nested


# --- prose ------------------------------------------------------------------------------------


def test_markdown_sections_carry_heading_paths_and_skip_fenced_code() -> None:
    text = ("# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\npip install x\n```\n\n"
            "### Linux\n\n" + "apt words " * 40 + "\n\n## Use\n\nRun it.\n")
    spans = split_document(text, FileKind("markdown", "markdown"), 120)
    assert "".join(s.text for s in spans) == text
    symbols = {s.symbol for s in spans}
    assert {"Guide > Install", "Guide > Install > Linux", "Guide > Use"} <= symbols
    assert not any(s.symbol and "not a heading" in s.symbol for s in spans)
    linux = [s for s in spans if s.symbol == "Guide > Install > Linux"]
    assert all(s.parent == "Guide > Install > Linux" for s in linux)  # split: owner is itself
    use = next(s for s in spans if s.symbol == "Guide > Use")
    assert use.symbol_kind == "section" and use.parent == "Guide"


def test_rst_titles_make_sections() -> None:
    text = ("=====\nTitle\n=====\n\nIntro.\n\nPart A\n------\n\n" + "alpha " * 30
            + "\n\nPart B\n------\n\nb.\n")
    spans = split_document(text, FileKind("rst"), 100)
    assert "".join(s.text for s in spans) == text
    assert {"Title > Part A", "Title > Part B"} <= {s.symbol for s in spans}


def test_pdf_pages_are_kept_on_chunks() -> None:
    pages_text = [f"Page {n} says " + "words " * 50 + "\n\n" for n in (1, 2, 3)]
    text = "".join(pages_text)
    starts = tuple(itertools.accumulate([0] + [len(p) for p in pages_text[:-1]]))
    spans = split_document(text, FileKind("pdf"), 200, pages=starts)
    assert "".join(s.text for s in spans) == text
    for s in spans:
        page = max(i for i, start in enumerate(starts, 1) if start <= s.char_start + 1)
        assert s.page == page
    assert {s.page for s in spans} == {1, 2, 3}


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\t{}();#=-`:def class fn func"), max_size=2000),
       st.sampled_from([FileKind("code", "js"), FileKind("code", "go"), FileKind("code", "rust"),
                        FileKind("code", "c"), FileKind("rst"), FileKind("html"),
                        FileKind("code", "json"), FileKind("notebook", "python")]),
       st.integers(min_value=20, max_value=400))
def test_any_text_partitions_exactly_with_every_chunker(text: str, kind: FileKind, budget: int) -> None:
    spans = split_document(text, kind, budget)
    assert "".join(s.text for s in spans) == text
    assert [s.ordinal for s in spans] == list(range(len(spans)))
    for a, b in itertools.pairwise(spans):
        assert a.char_end == b.char_start and a.start_line <= a.end_line <= b.start_line
    for s in spans:
        assert s.unit_start_line is None or s.unit_start_line <= s.start_line or not s.text.strip()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab \n", max_size=300), min_size=1, max_size=5))
def test_paged_text_partitions_exactly(pages: list[str]) -> None:
    text = "".join(pages)
    starts = tuple(itertools.accumulate([0] + [len(p) for p in pages[:-1]]))
    spans = split_document(text, FileKind("pdf"), 50, pages=starts)
    assert "".join(s.text for s in spans) == text
    assert all(s.page is not None and 1 <= s.page <= len(pages) for s in spans)


def test_deep_heading_paths_fit_the_database_columns() -> None:
    text = "".join(f"{'#' * level} {'T' * 300}{level}\n\nbody {level}\n\n" for level in range(1, 7))
    spans = split_document(text, FileKind("markdown", "markdown"), 40)
    assert "".join(s.text for s in spans) == text
    assert all(len(s.symbol or "") <= 512 and len(s.parent or "") <= 1024 for s in spans)
    assert any(s.parent and s.parent.endswith("…") for s in spans)
