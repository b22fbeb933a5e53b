"""Image files (PNG, JPEG, WebP, TIFF, GIF, BMP): their text by OCR, and the copy shown in citations.

The document's text is the OCR'd rows in reading order, one block per image (see
:mod:`.figures`); a multi-page TIFF is a paged document with one image per page ("p{n}-img1"),
any other image file has one stored image, ``"image"``. An image file is read whatever its size
(only the pixel limit applies), since it was given to be read. An image with no text found is
skipped like any empty document; one that cannot be decoded fails with the reason.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from corral.core.db import DocumentStatus
from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.figures import FigureReader, TextBuilder
from corral.ingestion.parsing.images import decode_frames, image_limits, open_image
from corral.ingestion.parsing.registry import Extracted, ParseFailure

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["parse_image"]


def parse_image(data: bytes, kind: FileKind) -> Extracted:
    limits = image_limits()
    if not limits.enabled:
        raise ParseFailure("OCR is turned off (CORRAL_OCR_ENABLED): image files are not indexed",
                           DocumentStatus.SKIPPED)
    image = open_image(data, limits)
    paged = image.format == "TIFF" and _has_second_frame(image)
    reader = FigureReader(limits)
    builder = TextBuilder()
    for index, frame in enumerate(decode_frames(image, limits, max(limits.per_document, 1))):
        page = index + 1 if paged else None
        if paged:
            builder.start_page()
        figure = reader.read(frame, f"p{page}-img1" if paged else "image", page)
        if figure is not None:
            builder.add_figure(figure, kind="figure")
        elif paged:
            builder.add("\n")  # every page holds at least a line, so page offsets stay distinct
    return Extracted(
        text=builder.text(), pages=tuple(builder.pages), kind=FileKind("image"),
        images=tuple(builder.images), ocr=tuple(builder.blocks),
    )


def _has_second_frame(image: Image) -> bool:
    # Cheaper than ``n_frames``, which walks every page of a file that may declare thousands.
    try:
        image.seek(1)
        image.seek(0)
    except (EOFError, ValueError, OSError):
        with contextlib.suppress(EOFError, ValueError, OSError):
            image.seek(0)
        return False
    return True
