"""Plain text: strict UTF-8, line endings normalised."""

from __future__ import annotations

from corral.ingestion.parsing.registry import ParseFailure

__all__ = ["decode_text"]


def decode_text(data: bytes) -> str:
    """Strict UTF-8 (a BOM is dropped) with line endings normalised to ``\\n``.

    Raises :class:`ParseFailure` naming the byte offset of the first invalid sequence: guessing
    another encoding would silently index mojibake.
    """
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom
        raise ParseFailure(
            f"invalid UTF-8 at byte {offset} (0x{data[offset]:02x}); re-save the file as UTF-8"
        ) from None
    # Normalise line endings so line numbers and offsets agree on every platform.
    return text.replace("\r\n", "\n").replace("\r", "\n")
