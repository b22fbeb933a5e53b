"""Packing a tree of units (definitions, sections, pages) into chunks of at most ``budget`` chars.

Every chunker (code, prose) describes its document as nested :class:`Unit` line ranges; the
:class:`Packer` walks them and returns :class:`Piece` s that are an exact partition of the text:

* a region (the file, or a unit being split) is cut into its child units and the gaps between;
* consecutive small segments are merged up to the budget;
* a segment over the budget is split along its own children, recursively; with no children left,
  along lines; a single line over the budget, along characters.

Boundaries are line starts except inside an over-long line, so chunks of code begin at the start of
a definition (with the comments and decorators right above it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Piece", "Unit", "pack"]


@dataclass(slots=True)
class Unit:
    """Lines ``[start, end)`` (0-based) of a named thing (``name`` is qualified) or an anonymous
    part of one (``anonymous``: a statement, a paragraph). ``expand`` gives its sub-units, computed
    only when the unit is too big to be one chunk."""

    start: int
    end: int
    name: str | None
    kind: str | None
    expand: Callable[[], list[Unit]] | None = None
    anonymous: bool = False
    _children: list[Unit] | None = field(default=None, repr=False)

    def children(self) -> list[Unit]:
        if self._children is None:
            self._children = self.expand() if self.expand is not None else []
        return self._children


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk: char range, the unit it starts with (``name``/``kind``) and the smallest named
    unit that encloses all of it (``owner``; ``None`` for the whole document)."""

    char_start: int
    char_end: int
    name: str | None
    kind: str | None
    owner: Unit | None


@dataclass(slots=True)
class _Seg:
    start: int
    end: int
    unit: Unit | None


class _Packer:
    def __init__(self, text: str, line_starts: Sequence[int], budget: int, max_depth: int) -> None:
        self.text, self.budget, self.max_depth = text, budget, max_depth
        # line_starts[i] is where line i begins; one sentinel at the end (len(text)).
        self.ls = line_starts

    def size(self, a: int, b: int) -> int:
        return self.ls[b] - self.ls[a]

    def region(self, lo: int, hi: int, units: list[Unit], owner: Unit | None, depth: int) -> list[Piece]:
        segs: list[_Seg] = []
        pos = lo
        for u in units:
            s, e = max(u.start, pos), min(u.end, hi)
            if e <= s:
                continue
            if s > pos:
                segs.append(_Seg(pos, s, None))
            segs.append(_Seg(s, e, u))
            pos = e
        if pos < hi:
            segs.append(_Seg(pos, hi, None))

        out: list[Piece] = []
        cur: list[_Seg] = []
        cur_size = 0

        def flush() -> None:
            nonlocal cur, cur_size
            if cur:
                first = next((s.unit for s in cur if s.unit is not None and not s.unit.anonymous), None)
                name, kind = (first.name, first.kind) if first is not None else _label(owner)
                out.append(Piece(self.ls[cur[0].start], self.ls[cur[-1].end], name, kind, owner))
            cur, cur_size = [], 0

        for seg in segs:
            n = self.size(seg.start, seg.end)
            if n > self.budget:
                flush()
                out.extend(self.split(seg, owner, depth))
            elif cur_size + n > self.budget:
                flush()
                cur, cur_size = [seg], n
            else:
                cur.append(seg)
                cur_size += n
        flush()
        return out

    def split(self, seg: _Seg, owner: Unit | None, depth: int) -> list[Piece]:
        unit = seg.unit
        if unit is not None and depth < self.max_depth and seg.end - seg.start > 1:
            inner_owner = owner if unit.anonymous else unit
            children = [c for c in unit.children() if c.end > seg.start and c.start < seg.end]
            if children and not (len(children) == 1 and (children[0].start, children[0].end)
                                 == (seg.start, seg.end) and children[0].anonymous):
                return self.region(seg.start, seg.end, children, inner_owner, depth + 1)
            if children:  # one anonymous child covering the same lines: look inside it instead
                return self.split(_Seg(seg.start, seg.end, children[0]), inner_owner, depth + 1)
        label_unit = unit if unit is not None and not unit.anonymous else owner
        if unit is not None and not unit.anonymous:
            owner = unit
        return self.lines(seg.start, seg.end, label_unit, owner)

    def lines(self, lo: int, hi: int, label: Unit | None, owner: Unit | None) -> list[Piece]:
        name, kind = _label(label)
        out: list[Piece] = []
        start = lo
        for line in range(lo, hi):
            if self.size(start, line + 1) > self.budget and line > start:
                out.append(Piece(self.ls[start], self.ls[line], name, kind, owner))
                start = line
            if self.size(line, line + 1) > self.budget:  # one over-long line: cut it in slices
                if line > start:
                    out.append(Piece(self.ls[start], self.ls[line], name, kind, owner))
                a, b = self.ls[line], self.ls[line + 1]
                for i in range(a, b, self.budget):
                    out.append(Piece(i, min(i + self.budget, b), name, kind, owner))
                start = line + 1
        if start < hi:
            out.append(Piece(self.ls[start], self.ls[hi], name, kind, owner))
        return out


def _label(unit: Unit | None) -> tuple[str | None, str | None]:
    return (unit.name, unit.kind) if unit is not None else (None, None)


def pack(
    text: str, line_starts: Sequence[int], root: Unit, budget: int, *, max_depth: int = 40
) -> list[Piece]:
    """Pieces of ``text`` covering ``root``'s lines (all of them: ``[0, line count)``), in order.

    ``line_starts`` must hold the offset of every line start plus ``len(text)`` at the end.
    """
    packer = _Packer(text, line_starts, max(budget, 1), max_depth)
    owner = None if root.name is None and root.kind is None else root
    return _merge_small(packer.region(root.start, root.end, root.children(), owner, 0), budget)


def _merge_small(pieces: list[Piece], budget: int) -> list[Piece]:
    """Join neighbours of the same owner while they fit the budget.

    Splitting a unit leaves short remnants (a signature before a long body, a closing line after
    it); within one owner they read better, and embed better, together.
    """
    out: list[Piece] = []
    for piece in pieces:
        if out:
            prev = out[-1]
            if prev.owner is piece.owner and piece.char_end - prev.char_start <= budget:
                out[-1] = Piece(prev.char_start, piece.char_end, prev.name, prev.kind, prev.owner)
                continue
        out.append(piece)
    return out
