"""Images beside OCR'd passages, for a chat backend that reads them (image content parts of the OpenAI
chat API, as vLLM serves them for Llama 4 Scout and Maverick).

A passage read from an image (a figure, a scanned page, an image file) always reaches the model as its
OCR text. When the backend is declared to take images, the stored image itself goes too, as a
``data:`` URI beside the question: the model can read what OCR got wrong (a chart's bars, a table's
layout). Per model call at most ``max_images`` images and ``max_bytes`` of them are sent, those of the
best-scored passages first; the rest are named on the run as left out. Sizes are read before any image
is: a corpus of a thousand figures costs one query of lengths and the chosen images' bytes only.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from corral.agents.retrieval import Passage, source_name
from corral.core.db import Document, DocumentImage

__all__ = ["IMAGE_TYPES", "Chosen", "Picture", "choose_images", "images_wanted", "with_images"]

# What vision servers take as image content parts; a stored image of another type is left out.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True, slots=True)
class Picture:
    path: str
    ref: str
    mime: str
    data: bytes
    name: str  # what the model is told it is: "[3] report.pdf p.4 (figure)"

    @property
    def url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(slots=True)
class Chosen:
    pictures: list[Picture] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "path#ref: why"

    @property
    def bytes(self) -> int:
        return sum(len(p.data) for p in self.pictures)


def _ranked(passages: Sequence[Passage]) -> list[tuple[tuple[str, str], Passage]]:
    """The distinct images of the OCR'd passages, best-scored passage first (ties: reading order)."""
    order = sorted(range(len(passages)), key=lambda i: (-(passages[i].score or 0.0), i))
    seen: dict[tuple[str, str], Passage] = {}
    for i in order:
        p = passages[i]
        if p.image_ref is not None:
            seen.setdefault((p.path, p.image_ref), p)
    return list(seen.items())


def images_wanted(passages: Sequence[Passage], max_images: int) -> int:
    """How many images ``passages`` would send at most: the window keeps room for them."""
    return min(max_images, len(_ranked(passages)))


def choose_images(session: Session, corpus_id: int, passages: Sequence[Passage], *, max_images: int,
                  max_bytes: int) -> Chosen:
    """The stored images of the OCR'd ``passages`` of corpus ``corpus_id``, within the caps."""
    out = Chosen()
    ranked = _ranked(passages)
    if not ranked or max_images <= 0:
        out.left_out = [f"{path}#{ref}: no images are sent (the cap is 0)" for (path, ref), _ in ranked]
        return out
    keys = [key for key, _ in ranked]
    rows = session.execute(
        select(Document.path, DocumentImage.ref, DocumentImage.id, DocumentImage.mime,
               func.length(DocumentImage.data))
        .join(Document, Document.id == DocumentImage.document_id)
        .where(Document.corpus_id == corpus_id, tuple_(Document.path, DocumentImage.ref).in_(keys))
    ).all()
    found = {(path, ref): (image_id, mime, int(size or 0)) for path, ref, image_id, mime, size in rows}
    take: list[tuple[int, str, tuple[str, str], Passage]] = []
    used = 0
    for key, p in ranked:
        what = f"{key[0]}#{key[1]}"
        got = found.get(key)
        if got is None:
            out.left_out.append(f"{what}: the image is no longer stored")
        elif got[1] not in IMAGE_TYPES:
            out.left_out.append(f"{what}: {got[1][:32]} is not an image type vision servers take")
        elif len(take) >= max_images:
            out.left_out.append(f"{what}: over the {max_images}-image cap of this call")
        elif used + got[2] > max_bytes:
            out.left_out.append(f"{what}: {got[2]} bytes would pass the cap of {max_bytes}")
        else:
            used += got[2]
            take.append((got[0], got[1], key, p))
    data = dict(session.execute(select(DocumentImage.id, DocumentImage.data)
                                .where(DocumentImage.id.in_([t[0] for t in take]))).all()) if take else {}
    for image_id, mime, (path, ref), p in take:
        name = source_name(p.path, p.page, p.image_ref, p.figure) or p.label
        out.pictures.append(Picture(path, ref, mime, bytes(data[image_id]), f"[{p.number}] {name}"))
    return out


def with_images(messages: Sequence[Mapping[str, Any]], pictures: Sequence[Picture]) -> list[dict[str, Any]]:
    """``messages`` with ``pictures`` added to the last user message as image content parts, each
    after a text part naming the source it shows; unchanged without pictures."""
    out = [dict(m) for m in messages]
    if not pictures:
        return out
    last = max(i for i, m in enumerate(out) if m.get("role") == "user")
    parts: list[dict[str, Any]] = [{"type": "text", "text": str(out[last]["content"])}]
    for pic in pictures:
        parts.append({"type": "text", "text": f"The image the OCR text of source {pic.name} was read from:"})
        parts.append({"type": "image_url", "image_url": {"url": pic.url}})
    out[last]["content"] = parts
    return out
