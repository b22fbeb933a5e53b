"""Redacting credentials from a parsed document before it is chunked, so that no stored text — chunk
rows, keyword index, vector store, and so everything read from them — ever holds one.

A credential becomes a marker (:func:`corral.core.redaction.marker`). Line numbers never move: a
replacement keeps every newline, so a private key block keeps its BEGIN and END lines and each body
line becomes a marker line. Char offsets after a replacement do move; the document's page offsets are
carried over (:meth:`Redaction.offset`).

A workspace that keeps its secrets (``Workspace.keep_secrets``) gets its text unchanged; credentials
are still found and counted.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from corral.core.redaction import CONTINUATION, marker
from corral.ingestion.parsing.images import StoredImage, mask_boxes
from corral.ingestion.parsing.ocr import Box
from corral.ingestion.parsing.read import ParsedDocument
from corral.ingestion.safety.secrets import Finding, find_secrets

__all__ = ["Cleaned", "Redaction", "clean_document", "redact_text"]

_INDENT = re.compile(r"[ \t]*")


class _Located(Protocol):
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Redaction:
    """Text with its credentials handled; ``positions``: where each credential starts in ``text``."""

    text: str
    positions: tuple[int, ...]
    # (old start, old end, new start, new end) of each replacement, in order.
    _moves: tuple[tuple[int, int, int, int], ...] = field(default=(), repr=False)

    def offset(self, old: int) -> int:
        """Where char offset ``old`` of the original text is in :attr:`text` (inside a replaced
        credential: where its marker starts)."""
        i = bisect.bisect_right([m[0] for m in self._moves], old) - 1
        if i < 0:
            return old
        _, old_end, new_start, new_end = self._moves[i]
        return new_start if old < old_end else new_end + (old - old_end)


def redact_text(text: str, findings: Sequence[Finding] | None = None, *, path: str = "",
                keep: bool = False) -> Redaction:
    """``text`` with each credential (``findings``, or those :func:`find_secrets` sees) replaced by
    its marker; with ``keep``, unchanged but with the credentials' positions."""
    found = find_secrets(text, path) if findings is None else list(findings)
    if keep or not found:
        return Redaction(text, tuple(f.start for f in found))
    parts: list[str] = []
    moves: list[tuple[int, int, int, int]] = []
    done = size = 0
    for f in found:
        parts.append(text[done : f.start])
        size += f.start - done
        stand_in = _stand_in(f, text[f.start : f.end])
        parts.append(stand_in)
        moves.append((f.start, f.end, size, size + len(stand_in)))
        size += len(stand_in)
        done = f.end
    parts.append(text[done:])
    return Redaction("".join(parts), tuple(m[2] for m in moves), tuple(moves))


def _stand_in(f: Finding, secret: str) -> str:
    """The marker for ``secret``, one line per line of it: the first line with material names the
    kind, the others continue it, blank lines stay blank, indents stay."""
    if "\n" not in secret:
        return marker(f.kind)
    lines = secret.split("\n")
    named = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        indent = _INDENT.match(line).group()  # type: ignore[union-attr]  # always matches
        lines[i] = indent + (CONTINUATION if named else marker(f.kind))
        named = True
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A parsed document as it is stored: credentials redacted unless ``kept``."""

    parsed: ParsedDocument
    positions: tuple[int, ...]  # where each credential starts in parsed.text
    kept: bool

    @property
    def found(self) -> int:
        return len(self.positions)

    def counts(self, spans: Sequence[_Located]) -> list[int]:
        """How many credentials start inside each of ``spans`` (chunks of :attr:`parsed`)."""
        starts = self.positions
        return [bisect.bisect_left(starts, s.char_end) - bisect.bisect_left(starts, s.char_start)
                for s in spans]


def clean_document(parsed: ParsedDocument, path: str, *, keep: bool = False) -> Cleaned:
    """``parsed`` with its credentials redacted from its text and title (its page offsets moved to
    match), or with ``keep`` only found. ``path`` picks the file type's detection rules."""
    red = redact_text(parsed.text, path=path, keep=keep)
    # A title may come from the format's metadata rather than the text: it is looked at on its own.
    title = redact_text(parsed.title).text if parsed.title and not keep else parsed.title
    if keep or (not red.positions and title == parsed.title):
        return Cleaned(parsed, red.positions, keep)
    pages = tuple(red.offset(p) for p in parsed.pages)
    images = _masked_images(parsed, red.text) if red.positions else parsed.images
    return Cleaned(replace(parsed, text=red.text, title=title, pages=pages, images=images),
                   red.positions, keep)


def _masked_images(parsed: ParsedDocument, text: str) -> tuple[StoredImage, ...]:
    """The document's stored images with the boxes of OCR lines that now hold a redaction painted
    over: the citation's image and a vision backend must not show what the text hides. Redaction
    keeps every line where it was, so the OCR blocks' line numbers still hold."""
    if not parsed.ocr:
        return parsed.images
    lines = text.split("\n")
    hidden: dict[str, list[Box]] = {}
    for block in parsed.ocr:
        for i, box in enumerate(block.boxes):
            n = block.start_line + i
            if box is not None and n < len(lines) and "[REDACTED" in lines[n]:
                hidden.setdefault(block.ref, []).append(box)
    return tuple(mask_boxes(image, hidden[image.ref]) if image.ref in hidden else image
                 for image in parsed.images)
