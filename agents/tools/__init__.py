"""Read-only corpus tools for agents: the service (:class:`CorpusReader`) and its LangChain tools."""

from corral.agents.tools.corpus import CorpusReader, DocInfo, Line, SymbolInfo
from corral.agents.tools.factories import SearchFn, Span, build_tools

__all__ = ["CorpusReader", "DocInfo", "Line", "SearchFn", "Span", "SymbolInfo", "build_tools"]
