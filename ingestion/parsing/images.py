"""Decoding untrusted images under explicit limits, and the scaled copy a document keeps of each.

Contract: an image is identified by its bytes, never its name (a ``.png`` holding a JPEG is read as
a JPEG; one holding text is refused), and only as one of :data:`FORMATS` — Pillow's other plugins
(EPS runs Ghostscript, PSD, ICNS...) are never tried. Its declared size is checked against
``image_max_pixels`` from the header, before any pixel is decoded; Pillow's own
``Image.MAX_IMAGE_PIXELS`` is set to the same setting and its decompression-bomb warning is an error
here. A truncated, corrupt or empty image raises :class:`~corral.ingestion.parsing.registry.ParseFailure`
with the reason; nothing else escapes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.ingestion.parsing.registry import ParseFailure

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["FORMATS", "OCR_MAX_SIDE", "STORED_MAX_SIDE", "ImageLimits", "StoredImage", "decode_frames",
           "image_limits", "open_image", "store_image"]

# What an image document or an embedded figure may be. GIF and BMP are cheap to allow: same decoder
# path, same limits.
FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP")
# The stored copy (what citations show) is at most this long on its longer side.
STORED_MAX_SIDE = 1600
# rapidocr reads at most 2000 px on the longer side (it scales bigger images down itself): scaling
# first spares the memory of a full-size RGB copy of a 600-dpi scan.
OCR_MAX_SIDE = 2000
# A stored PNG over this many bytes is stored as a JPEG instead (photos and noisy scans).
_PNG_MAX_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What one document may cost in images (from the settings; see :func:`image_limits`).

    ``max_pixels``: larger images are refused undecoded. ``min_side``/``min_pixels``: smaller ones
    (icons, rules, spacers) are not read. ``per_page``/``per_document``: at most this many images are
    OCR'd on one page / in one document; the rest are not decoded at all.
    """

    enabled: bool = True
    max_pixels: int = 40_000_000
    min_side: int = 32
    min_pixels: int = 16_384
    per_page: int = 8
    per_document: int = 100

    def worth_reading(self, width: int, height: int) -> bool:
        """Whether an image of this size is big enough to hold text worth indexing."""
        return min(width, height) >= self.min_side and width * height >= self.min_pixels

    def fits(self, width: int, height: int) -> bool:
        return 0 < width * height <= self.max_pixels


def image_limits() -> ImageLimits:
    """The limits configured for this process (read at call time, never at import)."""
    from corral.core.config import get_settings

    s = get_settings()
    return ImageLimits(
        enabled=s.ocr_enabled, max_pixels=s.image_max_pixels, min_side=s.ocr_min_image_side,
        min_pixels=s.ocr_min_image_pixels, per_page=s.ocr_max_images_per_page,
        per_document=s.ocr_max_images_per_document,
    )


@dataclass(frozen=True, slots=True)
class StoredImage:
    """The copy of one image a document keeps (a ``DocumentImage`` row): ``ref`` names it within its
    document ("image" for an image file, "p{page}-img{n}" for the n-th image read on a page, "img{n}"
    in unpaged documents); ``width``/``height`` are the stored copy's pixels, which OCR boxes use."""

    ref: str
    page: int | None
    mime: str
    width: int
    height: int
    data: bytes


def open_image(data: bytes, limits: ImageLimits) -> Image:
    """The image in ``data``, opened lazily (header only) and checked against ``limits``."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    PILImage.MAX_IMAGE_PIXELS = limits.max_pixels
    if not data:
        raise ParseFailure("empty image file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise ParseFailure(_unidentified(data)) from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise ParseFailure(_bomb(limits, exc)) from None
        except Exception as exc:  # untrusted input: a broken header is this file's error
            raise ParseFailure(f"corrupt image ({type(exc).__name__}): {exc}"[:300]) from None
    _check_size(image.size, limits)
    return image


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
          (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _unidentified(data: bytes) -> str:
    """Why Pillow recognised no image: a known format with a broken header, or not an image."""
    name = next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)
    if name is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        name = "WEBP"
    if name == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if width == 0 or height == 0:
            return f"image has no pixels ({width}x{height})"
    if name is not None:
        return f"corrupt {name} image: its header cannot be read"
    return ("not a readable image: the bytes are not " + ", ".join(FORMATS[:-1]) + " or BMP "
            "(the format is read from the content, not the file name)")


def _bomb(limits: ImageLimits, exc: Exception) -> str:
    return (f"image refused as a possible decompression bomb: over the {limits.max_pixels}-pixel "
            f"limit ({exc})")[:400]


def _check_size(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ParseFailure(f"image has no pixels ({width}x{height})")
    if not limits.fits(width, height):
        raise ParseFailure(
            f"image is {width}x{height} pixels, over the {limits.max_pixels}-pixel limit "
            "(refused undecoded as a possible decompression bomb)")


def decode_frames(image: Image, limits: ImageLimits, max_frames: int) -> Iterator[Image]:
    """The decoded pages of ``image``, upright (EXIF orientation applied) in RGB or L mode.

    A multi-page TIFF yields each page (at most ``max_frames``); every other format yields its
    first frame only — the frames of an animated GIF are an animation, not pages, and are never
    decoded. Raises :class:`ParseFailure` for a frame that is truncated or corrupt.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps

    pages = image.format == "TIFF"
    index = 0
    while index < max_frames:
        if index:
            try:
                image.seek(index)
            except EOFError:
                return
            except Exception as exc:
                raise ParseFailure(f"corrupt image page {index + 1} ({type(exc).__name__}): "
                                   f"{exc}"[:300]) from None
            _check_size(image.size, limits)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            try:
                image.load()
                frame = ImageOps.exif_transpose(image) if index == 0 else image.copy()
                frame = frame.convert("L" if frame.mode in ("1", "L", "I;16") else "RGB")
            except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
                raise ParseFailure(_bomb(limits, exc)) from None
            except Exception as exc:  # truncated data, bad compression, broken palette...
                raise ParseFailure(f"truncated or corrupt image ({type(exc).__name__}): "
                                   f"{exc}"[:300]) from None
        yield frame
        if not pages:
            return
        index += 1


def scaled(image: Image, max_side: int) -> Image:
    """``image`` scaled down (never up) so that its longer side is at most ``max_side``."""
    from PIL import Image as PILImage

    width, height = image.size
    if max(width, height) <= max_side:
        return image
    ratio = max_side / max(width, height)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return image.resize(size, PILImage.Resampling.LANCZOS)


def store_image(image: Image, ref: str, page: int | None) -> StoredImage:
    """The copy of ``image`` a document keeps: at most :data:`STORED_MAX_SIDE` px long, PNG, or
    JPEG where the PNG would be large (photographs, noisy scans)."""
    copy = scaled(image, STORED_MAX_SIDE)
    buf = io.BytesIO()
    copy.save(buf, format="PNG", optimize=False)
    mime = "image/png"
    if buf.tell() > _PNG_MAX_BYTES:
        buf = io.BytesIO()
        copy.save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    return StoredImage(ref=ref, page=page, mime=mime, width=copy.width, height=copy.height,
                       data=buf.getvalue())


def mask_boxes(stored: StoredImage, boxes: list[tuple[int, int, int, int]]) -> StoredImage:
    """``stored`` with each box (its own pixels) painted over in black: what is hidden from the text
    read from an image is hidden from the image too. The stored copy is ours, already small."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    with PILImage.open(io.BytesIO(stored.data)) as opened:
        image = opened.convert("RGB")
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill="black")
    return store_image(image, stored.ref, stored.page)

