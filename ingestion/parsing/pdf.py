"""PDF: the text of every page, with where each page starts so chunks can cite their page.

pypdf is pure Python and well kept; it reads text, not layout, which is what retrieval needs. A
PDF is untrusted binary input: whatever pypdf raises on a corrupt file is caught here and becomes
the document's error, with the exception's type so the cause is clear.
"""

from __future__ import annotations

import io
import warnings

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.registry import Extracted, ParseFailure

__all__ = ["MAX_PAGES", "parse_pdf"]

# A small file can declare a huge page tree; past this many pages we stop rather than loop for hours.
MAX_PAGES = 20_000


def parse_pdf(data: bytes, kind: FileKind) -> Extracted:
    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise ParseFailure("corrupt PDF: the file does not start with a %PDF- header")
    from pypdf import PdfReader

    texts: list[str] = []
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
            for page in reader.pages:
                texts.append(page.extract_text() or "")
            meta = reader.metadata
            if meta is not None and isinstance(meta.title, str):
                title = meta.title.strip()[:512] or None
        except ParseFailure:
            raise
        except Exception as exc:  # untrusted input: any pypdf failure is this file's error
            raise ParseFailure(f"corrupt PDF ({type(exc).__name__}): {exc}"[:500]) from None
    parts: list[str] = []
    pages: list[int] = []
    offset = 0
    for raw in texts:
        body = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip("\n")
        # Each page ends with a blank line, so every page starts on a fresh line of its own.
        chunk = f"{body}\n\n" if body else "\n"
        pages.append(offset)
        parts.append(chunk)
        offset += len(chunk)
    return Extracted(text="".join(parts), title=title, pages=tuple(pages))
