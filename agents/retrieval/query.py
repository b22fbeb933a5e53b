"""What the lexical (BM25) list is asked: the question's content words, and its identifiers split.

A question's function words ("which", "is", "the", "for") match nearly every chunk and only add noise
to a bag-of-words ranking, so they are dropped. An identifier written in camelCase is kept whole (the
keyword index folds case, so ``getAllHeaders`` matches the code that defines it) and also split into
its words (``get all headers``), which match prose and snake_case code (the index already splits on
underscores). A question of nothing but function words is sent as it is.

Words are read as the keyword index reads them (``corral.core.index.keyword``): folded to Unicode
NFKC, with their combining marks ("Can B̅ Corp." asks for ``b̅`` and ``corp``; a lone ``B`` would be
dropped as too short to search for), so full-width letters and ligatures match their plain spelling.
"""

from __future__ import annotations

import re

from corral.core.index.keyword import TERM, fold

__all__ = ["content_terms", "keyword_query"]

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP_WORDS = """a an and are as at be by can could did do does for from has have how i in is it its
    me my of on or
    our shall should so than that the their them then there these they this to was we were what when
    where which who whom why will with would you your about into any all not no yes if also just"""
_STOP = frozenset(_STOP_WORDS.split())


def content_terms(text: str) -> list[str]:
    """Lowercased words (NFKC, marks kept) of two or more characters that are not English stop words."""
    words = (m.group(0).lower() for m in TERM.finditer(fold(text)))
    return [w for w in words if len(w) > 1 and w not in _STOP]


def keyword_query(question: str) -> str:
    """The BM25 query for ``question``: content words in order, camelCase identifiers also split."""
    terms: dict[str, None] = {}
    for m in TERM.finditer(fold(question)):
        word = m.group(0)
        for t in (word, *(_CAMEL.findall(word) if word[1:] != word[1:].lower() else ())):
            t = t.lower()
            if len(t) > 1 and t not in _STOP:
                terms.setdefault(t, None)
    return " ".join(terms) or question
