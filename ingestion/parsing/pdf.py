"""PDF: the text of every page, with where each page starts so chunks can cite their page.

pypdf is pure Python and well kept; it reads text, not layout, which is what retrieval needs. A
PDF is untrusted binary input: whatever pypdf raises on a corrupt file is caught here and becomes
the document's error, with the exception's type so the cause is clear.

Images: a page with no text layer (or a negligible one: fewer than :data:`SCAN_TEXT_CHARS`
non-blank characters) is a scan, and its images are read by OCR as the page's text (blocks of kind
``"page"``); on a page with text, images big enough to hold text are read as figures appended to
the page (kind ``"figure"``). Either way the refs are ``p{page}-img{n}``. Sizes come from each image's
dictionary, so tiny or oversized images and those past the caps are never decoded; at most
:data:`MAX_XOBJECTS_PER_PAGE` image entries of a page are looked at. An image that cannot be decoded
is skipped; the page keeps its text.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.figures import FigureReader, FigureText, TextBuilder
from corral.ingestion.parsing.images import image_limits
from corral.ingestion.parsing.registry import Extracted, ParseFailure

__all__ = ["MAX_PAGES", "MAX_XOBJECTS_PER_PAGE", "SCAN_TEXT_CHARS", "parse_pdf"]

log = logging.getLogger(__name__)

# A small file can declare a huge page tree; past this many pages we stop rather than loop for hours.
MAX_PAGES = 20_000
# A page whose text layer has fewer non-blank characters than this is taken for a scan.
SCAN_TEXT_CHARS = 16
# Image entries looked at on one page (a PDF can declare thousands of tiny images on a page).
MAX_XOBJECTS_PER_PAGE = 1000


def parse_pdf(data: bytes, kind: FileKind) -> Extracted:
    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise ParseFailure("corrupt PDF: the file does not start with a %PDF- header")
    from pypdf import PdfReader

    builder = TextBuilder()
    figures = FigureReader(image_limits())
    seen: set[tuple[int, int]] = set()
    title: str | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pypdf warns about every oddity of a malformed file
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise ParseFailure("PDF is encrypted with a password; it cannot be indexed")
            count = len(reader.pages)
            if count > MAX_PAGES:
                raise ParseFailure(f"PDF has {count} pages, over the {MAX_PAGES}-page limit")
            for number, page in enumerate(reader.pages, 1):
                _add_page(builder, number, page.extract_text() or "",
                          _read_figures(page, number, figures, seen))
            meta = reader.metadata
            if meta is not None and isinstance(meta.title, str):
                title = meta.title.strip()[:512] or None
        except ParseFailure:
            raise
        except Exception as exc:  # untrusted input: any pypdf failure is this file's error
            raise ParseFailure(f"corrupt PDF ({type(exc).__name__}): {exc}"[:500]) from None
    if figures.skipped:
        log.info("PDF images not read: %d (%s)", len(figures.skipped), figures.skipped[0])
    return Extracted(text=builder.text(), title=title, pages=tuple(builder.pages),
                     images=tuple(builder.images), ocr=tuple(builder.blocks))


def _add_page(builder: TextBuilder, number: int, raw: str, figures: list[FigureText]) -> None:
    body = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip("\n")
    builder.start_page()
    # Each page ends with a blank line, so every page starts on a fresh line of its own.
    start = builder.length
    if body:
        builder.add(f"{body}\n\n")
    kind = "page" if len("".join(body.split())) < SCAN_TEXT_CHARS else "figure"
    for figure in figures:
        builder.add_figure(figure, kind=kind)
    if builder.length == start:
        builder.add("\n")


def _read_figures(
    page: Any, number: int, figures: FigureReader, seen: set[tuple[int, int]]
) -> list[FigureText]:
    """OCR the images of ``page`` that the reader admits, deciding from their dictionaries;
    ``seen`` holds the image objects already read in this document."""
    if not figures.limits.enabled or figures.limits.per_document <= figures.read_count:
        return []
    xobjects: Any = None
    try:
        resources: Any = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if hasattr(resources, "get") else None
        xobjects = xobjects.get_object() if xobjects is not None else None
        names = list(xobjects.keys())[:MAX_XOBJECTS_PER_PAGE] if hasattr(xobjects, "keys") else []
    except Exception as exc:  # a broken resource dictionary: the page's text is still good
        log.info("page %d: unreadable image resources (%r)", number, exc)
        return []
    out: list[FigureText] = []
    for name in names:
        try:
            entry = xobjects[name].get_object()
            if entry.get("/Subtype") != "/Image":
                continue
            width, height = int(entry.get("/Width", 0)), int(entry.get("/Height", 0))
            raw = xobjects.raw_get(name)
            key = (int(raw.idnum), int(raw.generation)) if hasattr(raw, "idnum") else None
        except Exception as exc:  # a malformed entry is one image less
            log.debug("page %d: unreadable image entry %s (%r)", number, name, exc)
            continue
        # A logo or letterhead drawn on every page is one object: read once, on its first page.
        if key in seen or not figures.admits(width, height, number):
            continue
        if key is not None:
            seen.add(key)
        ref = f"p{number}-img{len(out) + 1}"
        try:
            image = page.images[name].image
            if image is None or image.size != (width, height):
                continue
            frame = image.convert("L" if image.mode in ("1", "L") else "RGB")
        except Exception as exc:  # pypdf or Pillow could not decode it: skipped, logged
            log.info("page %d: image %s not decoded (%r)", number, name, exc)
            continue
        figure = figures.read(frame, ref, number)
        if figure is not None:
            out.append(figure)
    return out
