"""The text that stands where a credential was removed at ingest, defined once: ingestion writes it into
documents' stored text, the agents count it in what a run reads.

A marker reads ``[REDACTED <kind>]`` (``[REDACTED GitHub token]``), one per credential; the further
lines of a multi-line credential (a private key's body) read ``[REDACTED]`` and are not counted, so
that counting markers counts credentials. Markers hold no angle brackets, braces or chat-role words:
nothing that prompt-injection screening or a chat template keys on.
"""

from __future__ import annotations

import re

__all__ = ["CONTINUATION", "count_redactions", "marker"]

CONTINUATION = "[REDACTED]"
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .-]{0,39}")
_MARKER = re.compile(r"\[REDACTED [A-Za-z0-9][A-Za-z0-9 .-]{0,39}\]")


def marker(kind: str) -> str:
    """The marker for one credential of ``kind`` (letters, digits, spaces, dots, dashes; at most 40)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"not a credential kind a marker can name: {kind!r}")
    return f"[REDACTED {kind}]"


def count_redactions(text: str) -> int:
    """How many credentials were redacted from ``text`` (its markers, continuations not counted)."""
    return len(_MARKER.findall(text)) if "[REDACTED " in text else 0
