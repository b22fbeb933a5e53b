"""Text read from images, placed in a document's text with where each line came from.

The contract the chunker, the ``Chunk`` rows and the surfaces rely on:

* each image read is stored once per document (:class:`~corral.ingestion.parsing.images.StoredImage`,
  a ``DocumentImage`` row) under a ``ref`` unique in its document;
* its OCR text is one :class:`OcrBlock`: whole lines of the document's text, starting after a blank
  line and followed by one, so a figure's text starts a chunk of its own and never runs into body
  text; ``kind`` is ``"figure"`` (an image in a document, or an image file) or ``"page"`` (the scan
  of a PDF page that has no text layer);
* every line of the block has the box around the words on it, in the stored copy's pixels
  (``None`` for a line that holds no OCR'd words, e.g. an HTML image's alt text).

Blocks are located by line numbers, not character offsets: rewriting text within lines (credentials
redacted at ingest) leaves them valid.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.ingestion.parsing.images import (
    OCR_MAX_SIDE,
    ImageLimits,
    StoredImage,
    decode_frames,
    open_image,
    scaled,
    store_image,
)
from corral.ingestion.parsing.ocr import Box, OcrEngine, OcrLine, OcrUnavailableError, get_ocr_engine
from corral.ingestion.parsing.registry import ParseFailure

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["FigureReader", "FigureText", "OcrBlock", "TextBuilder", "layout"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OcrBlock:
    """Lines ``[start_line, end_line)`` (0-based) of a document's text, read by OCR from its image
    ``ref`` (on ``page``, 1-based, for paged documents); ``boxes[i]`` is the box of line
    ``start_line + i`` in the stored image's pixels (``None`` for a blank line or one with no box)."""

    ref: str
    page: int | None
    kind: str  # "figure" | "page"
    start_line: int
    end_line: int
    boxes: tuple[Box | None, ...]


@dataclass(frozen=True, slots=True)
class FigureText:
    """One image read: its rows of text in reading order (``""`` marks a paragraph break) with
    their boxes in the stored copy's pixels, and the stored copy."""

    rows: tuple[tuple[str, Box | None], ...]
    image: StoredImage


def layout(lines: Sequence[OcrLine]) -> list[tuple[str, Box | None]]:
    """OCR lines in reading order: grouped into rows (boxes whose vertical centres lie within half a
    line height of each other), each row read left to right; a vertical gap of more than a line
    height between rows becomes a paragraph break (``("", None)``)."""
    if not lines:
        return []
    height = statistics.median(line.box[3] - line.box[1] for line in lines) or 1
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: ((ln.box[1] + ln.box[3]) / 2, ln.box[0])):
        centre = (line.box[1] + line.box[3]) / 2
        if rows:
            last = rows[-1]
            last_centre = sum((ln.box[1] + ln.box[3]) / 2 for ln in last) / len(last)
            if abs(centre - last_centre) <= height / 2:
                last.append(line)
                continue
        rows.append([line])
    out: list[tuple[str, Box | None]] = []
    previous_bottom: int | None = None
    for row in rows:
        row.sort(key=lambda ln: ln.box[0])
        box = _union([ln.box for ln in row])
        assert box is not None
        if previous_bottom is not None and box[1] - previous_bottom > height:
            out.append(("", None))
        # One row is one line of the document's text, whatever the recogniser returned.
        out.append((" ".join(" ".join(ln.text.split()) for ln in row), box))
        previous_bottom = box[3]
    return out


def _union(boxes: Sequence[Box | None]) -> Box | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return (min(b[0] for b in present), min(b[1] for b in present),
            max(b[2] for b in present), max(b[3] for b in present))


class FigureReader:
    """Reads one document's images under its limits: counts them per page and per document, skips
    those too small to hold text, and OCRs the rest. One reader per document."""

    def __init__(self, limits: ImageLimits, engine: OcrEngine | None = None) -> None:
        from PIL import Image as PILImage

        # Explicit, from the settings: also bounds what the PDF and DOCX libraries hand to Pillow.
        PILImage.MAX_IMAGE_PIXELS = limits.max_pixels
        self.limits = limits
        self._engine = engine
        self._per_page: dict[int | None, int] = {}
        self.read_count = 0
        self.skipped: list[str] = []  # why images were not read, for the log

    def admits(self, width: int, height: int, page: int | None) -> bool:
        """Whether an image of this size on ``page`` is to be read: big enough, not over the pixel
        limit, and within the per-page (paged documents) and per-document caps. Decides before
        anything is decoded."""
        if not self.limits.enabled or not self.limits.worth_reading(width, height):
            return False
        if not self.limits.fits(width, height):
            self.skipped.append(f"{width}x{height} over the pixel limit")
            return False
        if self.read_count >= self.limits.per_document or (
                page is not None and self._per_page.get(page, 0) >= self.limits.per_page):
            self.skipped.append("over the images-per-page or per-document cap")
            return False
        return True

    def read_bytes(self, data: bytes, ref: str, page: int | None) -> FigureText | None:
        """OCR the embedded image ``data``; an unreadable or oversized figure is skipped (logged)
        rather than failing its document, whose other text is still good."""
        try:
            image = open_image(data, self.limits)
            if not self.admits(*image.size, page):
                return None
            frame = next(decode_frames(image, self.limits, 1))
        except ParseFailure as exc:
            self.skipped.append(f"{ref}: {exc.reason}")
            log.info("figure %s not read: %s", ref, exc.reason)
            return None
        return self.read(frame, ref, page)

    def read(self, image: Image, ref: str, page: int | None) -> FigureText | None:
        """OCR a decoded image; ``None`` when it holds no text. Counts against the caps."""
        self.read_count += 1
        self._per_page[page] = self._per_page.get(page, 0) + 1
        engine = self._engine
        if engine is None:
            try:
                engine = self._engine = get_ocr_engine()
            except OcrUnavailableError as exc:
                raise ParseFailure(f"OCR is unavailable: {exc}") from None
        ocr_image = scaled(image, OCR_MAX_SIDE)
        try:
            lines = engine.read_image(ocr_image)
        except Exception as exc:  # a decoder corner case inside the engine: this image's problem
            self.skipped.append(f"{ref}: OCR failed ({type(exc).__name__})")
            log.warning("OCR of %s failed: %r", ref, exc)
            return None
        if not lines:
            return None
        stored = store_image(image, ref, page)
        sx, sy = stored.width / ocr_image.width, stored.height / ocr_image.height
        rows = tuple(
            (text, None if box is None else _scale(box, sx, sy, stored.width, stored.height))
            for text, box in layout(lines)
        )
        return FigureText(rows=rows, image=stored)


def _scale(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    return (max(0, int(box[0] * sx)), max(0, int(box[1] * sy)),
            min(width, max(int(box[2] * sx + 0.999), 1)), min(height, max(int(box[3] * sy + 0.999), 1)))


class TextBuilder:
    """Builds a document's text from body text and figures, recording page starts, OCR blocks and
    stored images as it goes."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._lines = 0  # newlines so far: the 0-based line the next text starts on
        self._tail = ""  # the last two characters so far
        self.pages: list[int] = []
        self.blocks: list[OcrBlock] = []
        self.images: list[StoredImage] = []

    @property
    def length(self) -> int:
        return self._length

    def start_page(self) -> None:
        self.pages.append(self._length)

    def add(self, text: str) -> None:
        """Append body text (whole lines: it should end with a newline)."""
        if not text:
            return
        self._parts.append(text)
        self._length += len(text)
        self._lines += text.count("\n")
        self._tail = (self._tail + text)[-2:]

    def add_figure(self, figure: FigureText, kind: str = "figure", lead: Sequence[str] = ()) -> None:
        """Append a figure's rows as a block of their own (a blank line before and after), with
        ``lead`` lines (e.g. alt text, no box) before the OCR'd rows."""
        rows = [(line, None) for line in lead if line.strip()] + list(figure.rows)
        if not rows:
            return
        if self._length and self._tail != "\n\n":
            self.add("\n" if self._tail.endswith("\n") else "\n\n")
        start = self._lines
        body = "".join(f"{text}\n" for text, _ in rows)
        self.add(body + "\n")
        self.blocks.append(OcrBlock(
            ref=figure.image.ref, page=figure.image.page, kind=kind, start_line=start,
            end_line=start + len(rows), boxes=tuple(box for _, box in rows),
        ))
        self.images.append(figure.image)

    def text(self) -> str:
        return "".join(self._parts)
