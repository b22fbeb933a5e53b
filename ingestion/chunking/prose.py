"""Units for prose: sections from Markdown or reStructuredText headings, pages, and paragraphs.

A section runs from its heading to the next heading of the same or a higher level; its name is the
heading path (``Guide > Install > Linux``). A section too big for one chunk splits into its intro
paragraphs and subsections; a paragraph too big splits along lines. Paragraphs are blank-line
separated blocks, and a fenced code block in Markdown is never cut at its blank lines.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corral.ingestion.chunking.units import Unit

__all__ = ["markdown_units", "page_units", "paragraph_units", "rst_units"]

SEPARATOR = " > "
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#.<>])\1{2,}[ \t]*$")


@dataclass(frozen=True, slots=True)
class _Heading:
    line: int
    level: int
    title: str


def markdown_units(lines: Sequence[str]) -> Unit:
    """Sections from ATX (``## Title``) and setext headings, skipping fenced code."""
    headings: list[_Heading] = []
    fenced = _fenced_lines(lines)
    for i, line in enumerate(lines):
        if i in fenced:
            continue
        m = _ATX.match(line)
        if m:
            headings.append(_Heading(i, len(m.group(1)), (m.group(2) or "").strip()[:200]))
            continue
        if (
            i > 0 and (i - 1) not in fenced and _SETEXT.match(line) and lines[i - 1].strip()
            and not _ATX.match(lines[i - 1]) and (not headings or headings[-1].line != i - 1)
        ):
            level = 1 if line.strip().startswith("=") else 2
            headings.append(_Heading(i - 1, level, lines[i - 1].strip()[:200]))
    return _sections(lines, headings, fenced)


def rst_units(lines: Sequence[str]) -> Unit:
    """Sections from reStructuredText titles (underlined, optionally overlined); levels follow the
    order in which adornment styles first appear, as docutils does."""
    headings: list[_Heading] = []
    styles: list[tuple[str, bool]] = []
    i = 0
    while i < len(lines) - 1:
        title, under = lines[i], lines[i + 1]
        over = i > 0 and bool(_RST_ADORNMENT.match(lines[i - 1]))
        if (
            title.strip() and not _RST_ADORNMENT.match(title) and _RST_ADORNMENT.match(under)
            and len(under.rstrip()) >= len(title.rstrip())
        ):
            style = (under.strip()[0], over)
            if style not in styles:
                styles.append(style)
            start = i - 1 if over else i
            headings.append(_Heading(start, styles.index(style) + 1, title.strip()[:200]))
            i += 2
            continue
        i += 1
    return _sections(lines, headings, frozenset())


def paragraph_units(lines: Sequence[str]) -> Unit:
    """No headings: the document is a sequence of paragraphs."""
    return _sections(lines, [], frozenset())


def page_units(lines: Sequence[str], page_lines: Sequence[int]) -> Unit:
    """Pages (each starting at ``page_lines[i]``) split along paragraphs."""
    n = len(lines)
    starts = sorted({min(max(p, 0), n) for p in page_lines} | {0})
    pages: list[Unit] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        if end > start:
            number = bisect.bisect_right(page_lines, start) or 1
            pages.append(Unit(start, end, f"page {number}", "page",
                              expand=_paragraphs_of(lines, start, end, f"page {number}", "page",
                                                    frozenset())))
    return Unit(0, n, None, None, expand=lambda: pages)


def _sections(lines: Sequence[str], headings: list[_Heading], fenced: frozenset[int]) -> Unit:
    n = len(lines)
    root = _Node(None, 0, 0, n)
    stack = [root]
    for h in headings:
        while len(stack) > 1 and stack[-1].level >= h.level:
            stack[-1].end = h.line
            stack.pop()
        parent = stack[-1]
        path = f"{parent.path}{SEPARATOR}{h.title}" if parent.path else (h.title or "(untitled)")
        node = _Node(path, h.level, h.line, n)
        parent.children.append(node)
        stack.append(node)
    return root.to_unit(lines, fenced)


class _Node:
    def __init__(self, path: str | None, level: int, start: int, end: int) -> None:
        self.path, self.level, self.start, self.end = path, level, start, end
        self.children: list[_Node] = []

    def to_unit(self, lines: Sequence[str], fenced: frozenset[int]) -> Unit:
        kind = "section" if self.path is not None else None
        subs = self.children

        def expand() -> list[Unit]:
            intro_end = subs[0].start if subs else self.end
            intro = _paragraphs_of(lines, self.start, intro_end, self.path, kind, fenced)()
            return intro + [s.to_unit(lines, fenced) for s in subs]

        return Unit(self.start, self.end, self.path, kind, expand=expand)


def _paragraphs_of(
    lines: Sequence[str], lo: int, hi: int, name: str | None, kind: str | None, fenced: frozenset[int]
) -> Callable[[], list[Unit]]:
    def expand() -> list[Unit]:
        starts: list[int] = []
        prev_blank = True
        for i in range(lo, hi):
            blank = not lines[i].strip() and i not in fenced
            if not blank and prev_blank:
                starts.append(i)
            prev_blank = blank
        if not starts or starts[0] != lo:
            starts.insert(0, lo)
        bounds = [*starts, hi]
        return [Unit(a, b, name, kind, anonymous=True) for a, b in itertools.pairwise(bounds)
                if b > a]

    return expand


def _fenced_lines(lines: Sequence[str]) -> frozenset[int]:
    """Line numbers inside (and on the fences of) Markdown fenced code blocks."""
    inside: set[int] = set()
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                inside.add(i)
        else:
            inside.add(i)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = None
    return frozenset(inside)
