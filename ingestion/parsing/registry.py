"""Format parsers by document kind: bytes in, text (plus title and page starts) out.

Every parser takes the whole file's bytes (already size-checked) and either returns
:class:`Extracted` or raises :class:`ParseFailure` with a reason fit for ``Document.error``. Parsers
of untrusted binary formats catch their library's errors at this boundary and say what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.core.db import DocumentStatus
from corral.ingestion.parsing.detect import FileKind

if TYPE_CHECKING:
    from corral.ingestion.parsing.figures import OcrBlock
    from corral.ingestion.parsing.images import StoredImage

__all__ = ["Extracted", "ParseFailure", "Parser", "get_parser", "register_parser"]


@dataclass(frozen=True, slots=True)
class Extracted:
    """A parser's output. ``text`` may use Markdown headings (HTML, DOCX, notebooks produce them) so
    the prose chunker can follow sections; ``pages`` holds the char offset where each page starts.
    ``images`` are the images kept for citations, ``ocr`` the blocks of ``text`` read from them
    (see :mod:`corral.ingestion.parsing.figures`)."""

    text: str
    title: str | None = None
    pages: tuple[int, ...] = ()
    kind: FileKind | None = None  # set when parsing refined the kind (e.g. a notebook's language)
    images: tuple[StoredImage, ...] = ()
    ocr: tuple[OcrBlock, ...] = ()


class ParseFailure(Exception):  # an outcome carried to the Rejected record, not a bug
    """The document cannot be indexed; ``reason`` says why, ``status`` how to record it."""

    def __init__(self, reason: str, status: DocumentStatus = DocumentStatus.FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


Parser = Callable[[bytes, FileKind], Extracted]
_PARSERS: dict[str, Parser] = {}


def register_parser(kind: str, parser: Parser) -> None:
    """Use ``parser`` for documents of ``kind`` (replacing any earlier one)."""
    _PARSERS[kind] = parser


def get_parser(kind: str) -> Parser | None:
    """The parser for ``kind``; ``None`` for kinds read as plain UTF-8 text."""
    _load_builtin()
    return _PARSERS.get(kind)


_loaded = False


def _load_builtin() -> None:
    # Deferred: pypdf, python-docx and trafilatura take a noticeable time to import, and a corpus of
    # code never needs them.
    global _loaded
    if _loaded:
        return
    _loaded = True
    from corral.ingestion.parsing import imagefile, notebook, office, pdf, web

    _PARSERS.setdefault("pdf", pdf.parse_pdf)
    _PARSERS.setdefault("docx", office.parse_docx)
    _PARSERS.setdefault("notebook", notebook.parse_notebook)
    _PARSERS.setdefault("html", web.parse_html)
    _PARSERS.setdefault("image", imagefile.parse_image)
