"""OCR'd text as ingestion stores it, written straight into a corpus: a chunk marked as read from one
of its document's images (ref, box, page, kind) and that image stored — a real PNG of the chunk's own
text drawn with Pillow — for the tests of citing and sending images."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral.core.db import Chunk, Corpus, Document, DocumentImage

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOX = [20, 30, 380, 70]  # around the text png() draws at its default size


def png(text: str, size: tuple[int, int] = (400, 100)) -> bytes:
    """``text`` drawn black on white from (24, 36), as a PNG."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((24, 36), text, fill="black", font=ImageFont.truetype(FONT, 18))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def mark_ocr(sessions: sessionmaker[Session], corpus: str, path: str, ordinal: int, ref: str, *,
             page: int | None = None, kind: str = "page", bbox: Any = BOX, data: bytes | None = None,
             mime: str = "image/png") -> bytes:
    """Chunk ``ordinal`` of ``path`` in ``corpus`` becomes text read from image ``ref``, stored as a
    400x100 PNG of the chunk's text (or ``data``); returns the image's bytes."""
    with sessions.begin() as s:
        doc = s.scalars(select(Document).join(Corpus, Corpus.id == Document.corpus_id)
                        .where(Corpus.name == corpus, Document.path == path)).one()
        chunk = s.scalars(select(Chunk).where(Chunk.document_id == doc.id, Chunk.ordinal == ordinal)).one()
        chunk.image_ref, chunk.bbox, chunk.page, chunk.symbol_kind = ref, bbox, page, kind
        data = data or png(chunk.text.strip())
        if s.scalar(select(DocumentImage.id).where(DocumentImage.document_id == doc.id,
                                                   DocumentImage.ref == ref)) is None:
            s.add(DocumentImage(document_id=doc.id, ref=ref, page=page, mime=mime, width=400, height=100,
                                data=data))
    return data
