"""DOCX through python-docx: paragraphs and tables in document order, headings as Markdown.

A DOCX file is a zip archive, so its declared uncompressed size is checked before python-docx
inflates it (a small file must not expand into gigabytes of XML).

Pictures (DrawingML ``a:blip`` references to the package's image parts) are read by OCR and their
text placed right after the paragraph or table that holds them, as figure blocks ``img{n}``
(:mod:`.figures`); an image that cannot be decoded is skipped, the document keeps its text.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.figures import FigureReader, FigureText, TextBuilder
from corral.ingestion.parsing.images import image_limits
from corral.ingestion.parsing.registry import Extracted, ParseFailure

__all__ = ["MAX_DOCX_EXPANDED_BYTES", "parse_docx"]

MAX_DOCX_EXPANDED_BYTES = 256 * 1024 * 1024
_MAX_RATIO = 200
_HEADING = re.compile(r"^Heading (\d)$")


def parse_docx(data: bytes, kind: FileKind) -> Extracted:
    _check_expansion(data)
    import docx

    builder = TextBuilder()
    figures = FigureReader(image_limits())
    seen: set[str] = set()
    try:
        document = docx.Document(io.BytesIO(data))
        title = (document.core_properties.title or "").strip()[:512] or None
        for item in document.iter_inner_content():
            block = _block(item)
            if block:
                builder.add(f"{block}\n\n")
            for figure in _figures(item, document.part, figures, seen):
                builder.add_figure(figure)
    except ParseFailure:
        raise
    except Exception as exc:  # untrusted input: any python-docx failure is this file's error
        raise ParseFailure(f"corrupt DOCX ({type(exc).__name__}): {exc}"[:500]) from None
    text = builder.text().rstrip("\n")
    return Extracted(text=text + "\n" if text else "", title=title, images=tuple(builder.images),
                     ocr=tuple(builder.blocks))


def _figures(item: Any, part: Any, figures: FigureReader, seen: set[str]) -> list[FigureText]:
    """OCR'd pictures of a paragraph or table, each package image read once per document."""
    if not figures.limits.enabled:
        return []
    element = getattr(item, "_p", None) if hasattr(item, "_p") else getattr(item, "_tbl", None)
    if element is None:
        return []
    out: list[FigureText] = []
    for rid in element.xpath(".//a:blip/@r:embed"):
        rid = str(rid)
        if rid in seen:
            continue
        seen.add(rid)
        if figures.read_count >= figures.limits.per_document:
            break
        image_part = part.related_parts.get(rid)
        blob = getattr(image_part, "blob", None)
        if not isinstance(blob, bytes):
            continue
        figure = figures.read_bytes(blob, f"img{len(seen)}", None)
        if figure is not None:
            out.append(figure)
    return out


def _check_expansion(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseFailure(f"corrupt DOCX: not a zip container ({exc})") from None
    expanded = sum(i.file_size for i in infos)
    if expanded > MAX_DOCX_EXPANDED_BYTES or expanded > max(len(data), 1) * _MAX_RATIO:
        raise ParseFailure(
            f"DOCX expands to {expanded} bytes from {len(data)}: refused as a zip bomb"
        )


def _block(item: Any) -> str:
    """A paragraph as a Markdown line (headings, list items) or a table as pipe-separated rows."""
    if hasattr(item, "rows"):  # a table
        rows = []
        for row in item.rows:
            cells = [" ".join(cell.text.split()) for cell in row.cells]
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)
    text = str(item.text).replace("\r", "").strip()
    if not text:
        return ""
    style = str(item.style.name or "") if item.style is not None else ""
    if style == "Title":
        return f"# {text}"
    m = _HEADING.match(style or "")
    if m:
        return f"{'#' * min(int(m.group(1)) + 1, 6)} {text}"
    if style and style.startswith("List"):
        return f"- {text}"
    return text
