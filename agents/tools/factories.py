"""LangChain tools over a :class:`CorpusReader` (and a searcher): read-only, confined to one corpus.

Built by a factory over injected services (as langchain-core's ``create_retriever_tool``), each with a
pydantic input schema whose fields describe the arguments to the model. Tools return
``(text, artifact)``: the text the model reads and the spans read (``path``, ``start_line``,
``end_line``; reads add the ``text`` of the span, uncut, and the ``flags`` screening raised), from
which citations and the router's read passages are made. Everything is screened for prompt injection
once, here: a read screens the span's text, and the numbered lines the model reads are that screened
text. Bad arguments come back to the model as an error message (``handle_tool_error``), never as an
exception out of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from corral.agents.safety import InjectionScreen, RunScreen
from corral.agents.tools.corpus import MAX_LINE_CHARS, MAX_PATTERN_CHARS, MAX_SPAN_LINES, CorpusReader, Line
from corral.core.errors import CorralError

__all__ = ["SearchFn", "Span", "build_tools"]

Span = dict[str, Any]  # {"path", "start_line", "end_line"} and, for reads, "text" and "flags"
# (query, k) -> best-first [(path, start_line, end_line, text)]
SearchFn = Callable[[str, int], Sequence[tuple[str, int, int, str]]]
_SNIPPET = 700


class SearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=2000, description="What to look for, in plain words")
    k: int = Field(default=5, ge=1, le=20, description="How many passages to return")


class ReadDocumentArgs(BaseModel):
    path: str = Field(min_length=1, max_length=2048, description="A document path from list_documents")


class ReadSpanArgs(BaseModel):
    path: str = Field(min_length=1, max_length=2048, description="A document path from list_documents")
    start_line: int = Field(ge=1, description="First line to read, 1-based")
    end_line: int = Field(ge=1, description=f"Last line to read, inclusive; at most {MAX_SPAN_LINES} lines")


class ListDocumentsArgs(BaseModel):
    glob: str | None = Field(default=None, max_length=MAX_PATTERN_CHARS,
                             description="Optional shell pattern on paths, e.g. '*.py' or 'docs/*'")


class GrepArgs(BaseModel):
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS, description="A regular expression")
    glob: str | None = Field(default=None, max_length=MAX_PATTERN_CHARS,
                             description="Optional shell pattern restricting which paths are searched")
    ignore_case: bool = Field(default=False, description="Match letters of either case")


class SymbolArgs(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="A function, class or method name")


class OutlineArgs(BaseModel):
    path: str = Field(min_length=1, max_length=2048, description="A code document path")


def _lines_text(lines: Sequence[Line]) -> str:
    return "\n".join(f"{ln.path}:{ln.number}: {ln.text}" for ln in lines)


def _spans(lines: Sequence[Line]) -> list[Span]:
    """Collapse consecutive lines of the same document into spans, for citations."""
    spans: list[Span] = []
    for ln in lines:
        last = spans[-1] if spans else None
        if last and last["path"] == ln.path and last["end_line"] == ln.number - 1:
            last["end_line"] = ln.number
        else:
            spans.append({"path": ln.path, "start_line": ln.number, "end_line": ln.number})
    return spans


def _safe(fn: Callable[..., tuple[str, list[Span]]], *, name: str, reads: bool,
          screen: InjectionScreen) -> Callable[..., tuple[str, list[Span]]]:
    """Our errors become ToolExceptions (shown to the model); output is screened before it is read
    (a read's spans were screened as they were read: their flags say what was found)."""

    def run(**kwargs: Any) -> tuple[str, list[Span]]:
        try:
            text, spans = fn(**kwargs)
        except CorralError as exc:
            raise ToolException(str(exc)) from exc
        if reads:
            flags = list(dict.fromkeys(f for sp in spans for f in sp.get("flags", ())))
        else:
            s = screen.screen(text, name)
            text, flags = s.text, list(s.flags)
        if flags:
            text = f"[screened: possible prompt injection ({', '.join(flags)})]\n{text}"
        return text, spans

    return run


def _tool(name: str, description: str, schema: type[BaseModel], fn: Callable[..., tuple[str, list[Span]]],
          screen: InjectionScreen, *, reads: bool = False) -> BaseTool:
    return StructuredTool.from_function(
        func=_safe(fn, name=name, reads=reads, screen=screen), name=name, description=description,
        args_schema=schema,
        response_format="content_and_artifact", handle_tool_error=True,
        handle_validation_error=True,
    )


def build_tools(reader: CorpusReader, search: SearchFn | None = None,
                screen: InjectionScreen | None = None) -> list[BaseTool]:
    """The corpus tools for one run: search (when ``search`` is given), list_documents, read_document,
    read_span, grep, find_symbol, outline and references. ``screen``: the run's injection screen
    (default: the pattern stage, recording nothing)."""
    guard: InjectionScreen = screen or RunScreen()

    def do_search(query: str, k: int = 5) -> tuple[str, list[Span]]:
        assert search is not None
        hits = list(search(query, k))
        if not hits:
            return "no passages found", []
        text = "\n\n".join(f"[{p}:{a}-{b}]\n{t[:_SNIPPET]}" for p, a, b, t in hits)
        return text, [{"path": p, "start_line": a, "end_line": b} for p, a, b, _ in hits]

    def list_documents(glob: str | None = None) -> tuple[str, list[Span]]:
        docs = reader.list_documents(glob)
        if not docs:
            return "no documents match", []
        return "\n".join(f"{d.path} ({d.kind}, {d.lines} lines, {d.tokens} tokens)" for d in docs), []

    def screened(lines: list[Line]) -> tuple[str, list[Span]]:
        """The spans of ``lines`` with their text, screened once; the numbered lines shown are that
        screened text, each cut as the reader cuts it."""
        spans = _spans(lines)
        shown: list[Line] = []
        for sp in spans:
            s = guard.screen(reader.span_text(sp["path"], sp["start_line"], sp["end_line"]),
                             f"{sp['path']}:{sp['start_line']}-{sp['end_line']}")
            sp["text"] = s.text
            if s.flags:
                sp["flags"] = list(s.flags)
            shown += [Line(sp["path"], n, t[:MAX_LINE_CHARS])
                      for n, t in enumerate(s.text.split("\n")[: sp["end_line"] - sp["start_line"] + 1],
                                            start=sp["start_line"])]
        return _lines_text(shown), spans

    def read_document(path: str) -> tuple[str, list[Span]]:
        lines, cut = reader.read_document(path)
        text, spans = screened(lines)
        more = f"\n[cut at line {lines[-1].number if lines else 0}: use read_span]" if cut else ""
        return text + more, spans

    def read_span(path: str, start_line: int, end_line: int) -> tuple[str, list[Span]]:
        return screened(reader.read_span(path, start_line, end_line))

    def grep(pattern: str, glob: str | None = None, ignore_case: bool = False) -> tuple[str, list[Span]]:
        lines, more = reader.grep(pattern, glob, ignore_case=ignore_case)
        if not lines:
            return "no matches", []
        return _lines_text(lines) + ("\n[more matches not shown]" if more else ""), _spans(lines)

    def find_symbol(name: str) -> tuple[str, list[Span]]:
        found = reader.find_symbol(name)
        if not found:
            return f"no definition of {name!r} found", []
        return ("\n".join(f"{s.path}:{s.start_line}-{s.end_line} {s.kind} {s.name}" for s in found),
                [{"path": s.path, "start_line": s.start_line, "end_line": s.end_line} for s in found])

    def outline(path: str) -> tuple[str, list[Span]]:
        found = reader.outline(path)
        if not found:
            return f"no definitions in {path}", []
        return "\n".join(f"{s.start_line}-{s.end_line} {s.kind} {s.name}" for s in found), []

    def references(name: str) -> tuple[str, list[Span]]:
        lines, more = reader.references(name)
        if not lines:
            return f"no references to {name!r}", []
        return _lines_text(lines) + ("\n[more not shown]" if more else ""), _spans(lines)

    tools = [
        _tool("list_documents", "List the corpus's documents (path, kind, size).", ListDocumentsArgs,
              list_documents, guard),
        _tool("read_document", "Read a whole document with line numbers.", ReadDocumentArgs,
              read_document, guard, reads=True),
        _tool("read_span", "Read lines start_line..end_line of a document.", ReadSpanArgs, read_span,
              guard, reads=True),
        _tool("grep", "Find lines matching a regular expression, across documents.", GrepArgs, grep, guard),
        _tool("find_symbol", "Find where a function, class or method is defined.", SymbolArgs,
              find_symbol, guard),
        _tool("outline", "List the definitions in a code document.", OutlineArgs, outline, guard),
        _tool("references", "Find the lines that use a name (callers, imports).", SymbolArgs, references,
              guard),
    ]
    if search is not None:
        tools.insert(0, _tool("search", "Search the corpus for passages about a topic.", SearchArgs,
                              do_search, guard))
    return tools
