"""OCR: the lines of text in an image, each with its box, from a model that ships in its wheel.

Choice (measured in ``bench/ocr.py``, numbers in bench/RESULTS.md "OCR"): rapidocr over Tesseract.
Its wheel carries the PP-OCRv6 detection and recognition models and the angle classifier as ONNX
files, so nothing is installed outside pip and nothing is downloaded: the engine is built with the
explicit paths of those files (rapidocr downloads a model whenever it is given no path), and a
missing file is an :class:`OcrUnavailableError`, never a network call. It also read the rendered
test set more accurately than Tesseract 5.

The engine is loaded once per process, on first use (loading the models costs about a second), and
is shared by every thread; calls into it are serialised (onnxruntime already spreads one call over
the cores, and rapidocr keeps per-call state on the instance).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Box", "OcrEngine", "OcrLine", "OcrUnavailableError", "RapidOcrEngine", "get_ocr_engine"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; x1 and y1 exclusive

# The model files inside the rapidocr wheel (3.10): PP-OCRv6 small detection and recognition (the
# recognition model carries its character list) and the 0/180-degree line classifier.
_MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One line of text found in an image: ``box`` is its axis-aligned box in the pixels of the
    image that was read, ``score`` the recogniser's confidence in [0, 1]."""

    text: str
    box: Box
    score: float


class OcrUnavailableError(RuntimeError):
    """The OCR engine cannot be loaded (its model files are missing or broken)."""


class OcrEngine(Protocol):
    """Reads an image. Implementations are thread-safe and never fetch anything over the network."""

    def read_image(self, image: Image) -> list[OcrLine]:
        """The text lines of ``image`` (any mode; read as RGB), in no particular order."""
        ...


_DET_MAX_SIDE = 1280
_UPSCALE_SHORT = 736
_UPSCALE_BELOW = 800


def _bicubic() -> Any:
    from PIL import Image as PILImage

    return PILImage.Resampling.BICUBIC


class RapidOcrEngine:
    """rapidocr on onnxruntime with the models of its own wheel."""

    def __init__(self, model_dir: Path | None = None, *, upscale: bool = True) -> None:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:  # the dependency is pinned; a broken install says so
            raise OcrUnavailableError(f"rapidocr cannot be imported: {exc}") from None
        folder = model_dir or Path(rapidocr.__file__).resolve().parent / "models"
        # Detection scales the longer side down to 1280 px at most. rapidocr's default scales the
        # *shorter* side up to 736 px, which turns a 640x100 screenshot into a 4700x736 input: 3-4x
        # slower on the bench set for the same accuracy (bench/RESULTS.md "OCR").
        params: dict[str, Any] = {
            "Global.log_level": "error", "Det.limit_type": "max", "Det.limit_side_len": _DET_MAX_SIDE,
        }
        for stage, name in _MODEL_FILES.items():
            path = folder / name
            if not path.is_file():
                raise OcrUnavailableError(f"OCR model file is missing: {path}")
            params[f"{stage}.model_path"] = str(path)
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as exc:  # a corrupt model file: the engine is unusable, say why
            raise OcrUnavailableError(f"OCR engine failed to load: {exc!r}"[:500]) from None
        self._lock = threading.Lock()
        self._upscale = upscale

    def read_image(self, image: Image) -> list[OcrLine]:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        width, height = rgb.size
        # A small image (longer side under 800 px) is scaled up first, its shorter side towards 736
        # px but its longer side no further than the detector's 1280: without it the sparse labels of
        # a 700 px chart ("120", "Q3") went unseen or misread. Larger images are left as they are:
        # scaled up, a 900 px screenshot lost a line (bench/RESULTS.md "OCR"). rapidocr's own
        # upscaling has no ceiling (see above).
        factor = min(_UPSCALE_SHORT / min(width, height), _DET_MAX_SIDE / max(width, height))
        probe = rgb
        if self._upscale and max(width, height) < _UPSCALE_BELOW and factor > 1.05:
            probe = rgb.resize((round(width * factor), round(height * factor)),
                               _bicubic())
        else:
            factor = 1.0
        with self._lock:
            result: Any = self._ocr(probe)
        boxes, texts, scores = (getattr(result, name, None) for name in ("boxes", "txts", "scores"))
        if boxes is None or texts is None or scores is None:
            return []
        lines: list[OcrLine] = []
        for quad, text, score in zip(boxes, texts, scores, strict=False):
            text = str(text).strip()
            if not text:
                continue
            xs = [float(p[0]) / factor for p in quad]
            ys = [float(p[1]) / factor for p in quad]
            box = (max(0, int(min(xs))), max(0, int(min(ys))),
                   min(width, int(max(xs)) + 1), min(height, int(max(ys)) + 1))
            if box[2] > box[0] and box[3] > box[1]:
                lines.append(OcrLine(text, box, float(score)))
        return lines


_engine: OcrEngine | None = None
_engine_lock = threading.Lock()


def get_ocr_engine() -> OcrEngine:
    """The process's OCR engine, loaded on first use (raises :class:`OcrUnavailableError`)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = RapidOcrEngine()
    return _engine
