"""Images on dashboard pages: where a document's stored image is served, and the box of the text read
from it, placed over the image in percentages of its size (CSS only: the box scales with the image)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from corral.core.services.documents import image_sizes

__all__ = ["box_style", "cited_images", "image_path"]


def image_path(corpus: str, path: str, ref: str) -> str:
    """The dashboard's URL of image ``ref`` of the document at ``path``."""
    return f"/corpora/{quote(corpus, safe='')}/documents/{quote(path, safe='/')}/images/{quote(ref, safe='')}"


def box_style(bbox: Any, width: int, height: int) -> str | None:
    """``left/top/width/height`` in percent of the image for ``bbox`` ([x0, y0, x1, y1] in its pixels),
    clamped to the image; None for a missing or malformed box (the image is shown without one)."""
    if (not isinstance(bbox, Sequence) or isinstance(bbox, str) or len(bbox) != 4 or width <= 0
            or height <= 0 or not all(isinstance(v, int) and not isinstance(v, bool) for v in bbox)):
        return None
    x0, x1 = sorted((min(max(bbox[0], 0), width), min(max(bbox[2], 0), width)))
    y0, y1 = sorted((min(max(bbox[1], 0), height), min(max(bbox[3], 0), height)))
    if x1 <= x0 or y1 <= y0:
        return None
    return (f"left: {100 * x0 / width:.2f}%; top: {100 * y0 / height:.2f}%; "
            f"width: {100 * (x1 - x0) / width:.2f}%; height: {100 * (y1 - y0) / height:.2f}%")


def cited_images(db: Session, corpus_id: int, corpus: str, citations: Sequence[Mapping[str, Any]]
                 ) -> dict[int, dict[str, Any]]:
    """For each citation (by index) of OCR'd text whose image is still stored: the image's URL, size,
    and the style placing its box."""
    keys = [(str(c.get("path")), str(c.get("image_ref"))) for c in citations if c.get("image_ref")]
    sizes = image_sizes(db, corpus_id, keys)
    out: dict[int, dict[str, Any]] = {}
    for i, c in enumerate(citations):
        key = (str(c.get("path")), str(c.get("image_ref")))
        if not c.get("image_ref") or key not in sizes:
            continue
        width, height = sizes[key]
        out[i] = {"url": image_path(corpus, *key), "width": width, "height": height,
                  "box": box_style(c.get("bbox"), width, height)}
    return out
