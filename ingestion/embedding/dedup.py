"""Embedding each distinct text once.

Code and documents repeat themselves: licence headers, ``__init__`` boilerplate, vendored copies,
the same file under two paths. :func:`embed_deduplicated` embeds each distinct text once, takes the
vectors it is handed for texts already embedded (chunks already in the corpus, found by content
hash), and hands the embedder the rest longest-first, so each batch pads to similar lengths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corral.core.types import Embedder

__all__ = ["EmbedStats", "content_hash", "embed_deduplicated"]


def content_hash(text: str) -> str:
    """The SHA-256 of ``text`` (UTF-8): a chunk's identity for deduplication."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class EmbedStats:
    texts: int = 0  # vectors returned
    embedded: int = 0  # texts the model actually ran on
    reused: int = 0  # vectors taken from ``known``
    duplicates: int = 0  # repeats of a text earlier in the same call


def embed_deduplicated(
    embedder: Embedder,
    texts: Sequence[str],
    hashes: Sequence[str],
    known: Mapping[str, Sequence[float]],
    stats: EmbedStats | None = None,
) -> list[list[float]]:
    """One vector per text, in order. ``hashes[i]`` is ``content_hash(texts[i])``; ``known`` maps
    content hashes to vectors already computed with the same model."""
    if len(texts) != len(hashes):
        raise ValueError("texts and hashes differ in length")
    by_hash: dict[str, list[float]] = {}
    todo: dict[str, str] = {}
    for text, digest in zip(texts, hashes, strict=True):
        if digest in by_hash or digest in todo:
            if stats is not None:
                stats.duplicates += 1
            continue
        vector = known.get(digest)
        if vector is not None:
            by_hash[digest] = list(vector)
            if stats is not None:
                stats.reused += 1
        else:
            todo[digest] = text
    if todo:
        # Longest first: batches group similar lengths and pad less.
        order = sorted(todo, key=lambda d: len(todo[d]), reverse=True)
        vectors = embedder.embed_documents([todo[d] for d in order])
        by_hash.update(zip(order, vectors, strict=True))
        if stats is not None:
            stats.embedded += len(order)
    if stats is not None:
        stats.texts += len(texts)
    return [by_hash[d] for d in hashes]
