"""HTML: the main text, not the navigation, headers, footers and scripts around it.

Choice: trafilatura (well kept, offline, the best-scoring main-content extractor in published
benchmarks) over readability-lxml (returns HTML we would still have to flatten) and selectolax
(fast, but no boilerplate removal). It writes Markdown, so headings become sections for the
chunker. Pages where it finds no main content (a bare fragment) fall back to all visible text.

Images carried in the page as ``data:`` URIs (base64) are read by OCR and appended as figure blocks
``img{n}`` after the text, each led by its alt text (:mod:`.figures`); a remote ``src`` is never
fetched.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.figures import FigureReader, FigureText, TextBuilder
from corral.ingestion.parsing.images import image_limits
from corral.ingestion.parsing.registry import Extracted, ParseFailure

__all__ = ["parse_html"]

_DATA_URI = re.compile(r"\s*data:image/[\w.+-]+((?:;[^,;]*)*),", re.IGNORECASE)


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
    text = text if text.endswith("\n") or not text else text + "\n"
    title = (title or "")[:512] or None
    figures = _figures(markup) if re.search(b"data:image/", data, re.IGNORECASE) else []
    if not figures:
        return Extracted(text=text, title=title)
    builder = TextBuilder()
    builder.add(text)
    for figure, alt in figures:
        builder.add_figure(figure, lead=[alt] if alt else [])
    return Extracted(text=builder.text(), title=title, images=tuple(builder.images),
                     ocr=tuple(builder.blocks))


def _figures(markup: str | bytes) -> list[tuple[FigureText, str]]:
    """The OCR'd ``data:`` URI images of the page, in document order, with their alt text."""
    import lxml.etree
    import lxml.html

    reader = FigureReader(image_limits())
    if not reader.limits.enabled:
        return []
    try:
        tree = lxml.html.fromstring(markup)
    except (lxml.etree.ParserError, ValueError):
        return []
    out: list[tuple[FigureText, str]] = []
    for n, element in enumerate(tree.iter("img"), 1):
        if reader.read_count >= reader.limits.per_document:
            break
        src = str(element.get("src") or "")
        match = _DATA_URI.match(src)
        if match is None or "base64" not in match.group(1).lower():
            continue  # a remote or non-base64 source: never fetched
        try:
            blob = base64.b64decode(src[match.end():], validate=False)
        except (binascii.Error, ValueError):
            continue
        figure = reader.read_bytes(blob, f"img{n}", None)
        if figure is not None:
            alt = " ".join(str(element.get("alt") or "").split())[:500]
            out.append((figure, alt))
    return out


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
