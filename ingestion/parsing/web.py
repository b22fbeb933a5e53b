"""HTML: the main text, not the navigation, headers, footers and scripts around it.

Choice: trafilatura (well kept, offline, the best-scoring main-content extractor in published
benchmarks) over readability-lxml (returns HTML we would still have to flatten) and selectolax
(fast, but no boilerplate removal). It writes Markdown, so headings become sections for the
chunker. Pages where it finds no main content (a bare fragment) fall back to all visible text.
"""

from __future__ import annotations

import re
import warnings

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.registry import Extracted, ParseFailure

__all__ = ["parse_html"]


def parse_html(data: bytes, kind: FileKind) -> Extracted:
    import trafilatura

    # UTF-8 first (what nearly every page is): trafilatura's own guess reads an undeclared UTF-8 page
    # as Latin-1. Other encodings are left to its charset detection.
    markup: str | bytes
    try:
        markup = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        markup = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed markup is expected input here
        try:
            text = trafilatura.extract(
                markup, output_format="markdown", include_formatting=True, include_tables=True,
                include_comments=False, favor_recall=True, deduplicate=False,
            )
            meta = trafilatura.extract_metadata(markup)
        except (ValueError, TypeError, LookupError, RecursionError) as exc:
            raise ParseFailure(f"unreadable HTML: {type(exc).__name__}: {exc}"[:300]) from None
        title = meta.title if meta is not None and meta.title else None
        if not text:
            text = _visible_text(markup)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Extracted(text=text if text.endswith("\n") or not text else text + "\n",
                     title=(title or "")[:512] or None)


def _visible_text(markup: str | bytes) -> str:
    """Every visible text node, for fragments with no article in them."""
    import lxml.etree
    import lxml.html

    try:
        tree = lxml.html.fromstring(markup)
    except (lxml.etree.ParserError, ValueError):
        return ""
    for element in tree.xpath("//script|//style|//noscript|//template"):
        element.drop_tree()
    text: str = tree.text_content()
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()
