"""A corpus of long prose documents — novel-length text with planted facts — generated from a seed.

Real long-document collections break what code corpora never exercise: paragraphs that are one line of
thousands of characters, documents larger than the whole context window, names written with combining
marks (``B̅``), full-width letters or ligatures. Nothing here is downloaded: each novel is built from a
small vocabulary by a seeded generator, so the same arguments always write the same bytes.

``prose_tasks(out, novels=3, facts=16, seed=0)`` writes ``novel-1.md`` … under ``out`` and returns the tasks:

* **needle**: one fact planted inside a paragraph at a known depth, asked in other words; some are
  single facts worded with "how many", "summary", "list all" or "all the … in" (lookups that must not be
  mistaken for global questions);
* **aggregate**: ledger entries spread over every novel, asked as a count and a total.

Each task's evidence is the planted sentence, exactly as written in the file.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from corral.agents.eval.tasks import EvalTask

__all__ = ["NOVEL_WORDS", "PLANTED", "Novel", "prose_tasks", "write_novels"]

# Words per novel, about 1.3 tokens each in a subword tokenizer: ~30k, ~50k and ~80k tokens.
NOVEL_WORDS = (23_000, 38_000, 60_000)

# Named entities whose spelling is what a keyword index must not lose: a combining overline (U+0305),
# a decomposed diaeresis (e + U+0308), a full-width name and a ligature.
COMBINING_COMPANY = "B\u0305 Corp."
DECOMPOSED_NAME = "Zoe\u0308 Marchetti"
FULL_WIDTH_NAME = "\uff2b\uff41\uff49 \uff2f\uff4b\uff41\uff46\uff4f\uff52"  # "Kai Okafor"
LIGATURE_PLACE = "the O\ufb03ce of Tides"

_PEOPLE = ["Marisol Quint", "Tobias Wren", "Odile Farrow", "Ignatius Pell", "Hana Lindqvist", "Caspar Mole",
           "Yusuf Adeyemi", "Greta Holm", DECOMPOSED_NAME, FULL_WIDTH_NAME, "Leopold Brisk", "Ines Calder"]
_PLACES = ["Thornbury", "Ashcombe", "Wrenfield", "Marlow Cove", "Pennick", "Dunmore", "Halloway",
           "Brackwater", "Elsmere", "Quillon", "Saltmarsh", "Fennick"]
_THINGS = ["lantern", "letter", "ledger", "compass", "violin", "map", "kettle", "umbrella", "telescope",
           "coat", "rope", "bell", "ribbon", "clock", "harpoon", "basket", "candle", "key"]
_VERBS = ["carried", "mended", "hid", "polished", "weighed", "studied", "returned", "lost", "found",
          "painted", "counted", "wrapped", "sold", "borrowed"]
_ADJ = ["grey", "narrow", "salt-stained", "quiet", "crooked", "bright", "heavy", "cold", "patient",
        "ancient", "restless", "faded", "tidy", "windswept"]
_WEATHER = ["rain drummed on the slate roofs", "a cold wind came off the estuary", "fog lay over the harbour",
            "the tide turned under a white sky", "gulls wheeled above the fish market",
            "the bells of the chapel rang for evening", "snow gathered in the gutters"]
_SENTENCES = [
    "{p} {v} the {a} {t} before anyone in {l} was awake.",
    "In {l}, {w}, and {p} thought about the {t} again.",
    "Nobody asked {p} why the {t} had been {v}, and {p} offered no explanation.",
    "The {a} streets of {l} were empty except for a cart and a dog.",
    "{p} said, \"We will need the {t} before the week is out,\" and nobody argued.",
    "It was the kind of {a} morning when {w}.",
    "Later, at the inn in {l}, {p} {v} a {t} that belonged to someone else.",
    "There had been talk in {l} of a {a} {t}, but talk in {l} was cheap.",
    "{p} walked the long way round, past the {a} warehouses, counting steps.",
    "The letter from {l} said only that the {t} had arrived and that {w}.",
]
_BOUNDARY = re.compile(r'(?<=[.!?"]) (?=[A-Z\uff21-\uff3a])')  # between two sentences
_TITLES = ["The Salt Ledger", "A Harbour of Small Hours", "The Lamplighter's Winter", "Estuary",
           "The Clockmaker of Pennick"]
_CHAPTER_WORDS = 2_500
_LONG_PARAGRAPH_EVERY = 5  # one paragraph in five is a single line of several thousand characters

# Planted facts: (sentence, question, answer). {n} a person, {l} a town, {c} the company, {o} the
# ligature place, {k} a number. Questions paraphrase the sentence; the ones worded as counts, summaries
# or lists still ask for one fact.
PLANTED: tuple[tuple[str, str, str], ...] = (
    ("The lighthouse keeper {n} logged {k} passing whales last spring.",
     "How many passing whales did the lighthouse keeper {n} record last spring?", "{k}"),
    ("Can {c} kept its spare ledgers from {l} in a tin trunk under the chapel organ.",
     "Where did Can {c} keep its spare ledgers from {l}?", "in a tin trunk under the chapel organ"),
    ("At the end of the {l} inquiry the summary read aloud by {n} blamed a cracked boiler valve.",
     "According to the summary read out at the end of the {l} inquiry, what caused the trouble?",
     "a cracked boiler valve"),
    ("The harbour master {n} kept a list of all the ships in the roads, pinned behind the pantry door.",
     "Where did the harbour master {n} pin the list of all the ships in the roads?",
     "behind the pantry door"),
    ("{n} buried the brass key to the boathouse beneath the third juniper bush.",
     "Where was the key to the boathouse hidden by {n}?", "beneath the third juniper bush"),
    ("The ferry from {l} to {o} left at {k} minutes past seven each morning.",
     "At what time did the boat from {l} to {o} depart?", "{k} minutes past seven"),
    ("{n} paid {k} silver crowns for the blue fiddle at the winter fair.",
     "How many silver crowns did {n} pay for the fiddle at the fair?", "{k} silver crowns"),
    ("All the clocks in the {l} workshop were set eleven minutes fast by order of {n}.",
     "Who ordered all the clocks in the {l} workshop to be set fast?", "{n}"),
)
_LEDGER = ("Ledger entry: the {l} granary holds {k} sacks of rye.",
           "How many granaries are recorded in the ledger entries, and how many sacks of rye do they hold "
           "in total?")


@dataclass(frozen=True, slots=True)
class Novel:
    path: str  # relative to the folder written
    title: str
    text: str


def _paragraph(rng: random.Random, words: int) -> str:
    out: list[str] = []
    count = 0
    while count < words:
        s = rng.choice(_SENTENCES).format(
            p=rng.choice(_PEOPLE), l=rng.choice(_PLACES), t=rng.choice(_THINGS), v=rng.choice(_VERBS),
            a=rng.choice(_ADJ), w=rng.choice(_WEATHER))
        out.append(s)
        count += len(s.split())
    return " ".join(out)


def _chapters(rng: random.Random, words: int) -> list[list[str]]:
    """Chapters of paragraphs, each paragraph one line; some very long."""
    chapters: list[list[str]] = []
    left = words
    while left > 0:
        paras: list[str] = []
        in_chapter = min(_CHAPTER_WORDS, left)
        while in_chapter > 0:
            long = len(paras) % _LONG_PARAGRAPH_EVERY == _LONG_PARAGRAPH_EVERY - 1
            size = min(in_chapter, rng.randint(700, 1200) if long else rng.randint(40, 160))
            paras.append(_paragraph(rng, size))
            in_chapter -= size
        chapters.append(paras)
        left -= _CHAPTER_WORDS
    return chapters


def _plant(rng: random.Random, chapters: list[list[str]], sentence: str, depth: float) -> None:
    """Insert ``sentence`` inside the paragraph at ``depth`` (0..1) of the novel, between two sentences
    (never inside one, so earlier plants stay whole)."""
    flat = [(c, i) for c, paras in enumerate(chapters) for i in range(len(paras))]
    c, i = flat[min(int(depth * len(flat)), len(flat) - 1)]
    para = chapters[c][i]
    cuts = [0, *(m.end() for m in _BOUNDARY.finditer(para)), len(para)]
    at = rng.choice(cuts)
    chapters[c][i] = (para + " " + sentence if at == len(para)
                      else para[:at] + sentence + " " + para[at:])


def _render(title: str, chapters: list[list[str]]) -> str:
    lines = [f"# {title}", ""]
    for n, paras in enumerate(chapters, start=1):
        lines += [f"## Chapter {n}", ""]
        for p in paras:
            lines += [p, ""]
    return "\n".join(lines)


def write_novels(out: Path, *, novels: int = 3, words: tuple[int, ...] = NOVEL_WORDS, facts: int = 16,
                 ledger_entries: int = 9, seed: int = 0) -> tuple[list[Novel], list[EvalTask]]:
    """Write ``novels`` novels under ``out`` (lengths cycle through ``words``) with ``facts`` facts
    (:data:`PLANTED` in turn, each with other names and numbers) planted at varied depths and
    ``ledger_entries`` ledger records spread over them; returns the novels and their tasks (evidence
    paths relative to ``out``)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    books = [_chapters(rng, words[i % len(words)]) for i in range(novels)]
    paths = [f"novel-{i + 1}.md" for i in range(novels)]
    tasks: list[EvalTask] = []
    for j in range(facts):
        sentence, question, answer = PLANTED[j % len(PLANTED)]
        slots = {"n": _PEOPLE[(j * 5 + seed) % len(_PEOPLE)], "l": _PLACES[(j * 7 + seed) % len(_PLACES)],
                 "c": COMBINING_COMPANY, "o": LIGATURE_PLACE, "k": str(rng.randint(11, 97))}
        b = j % novels
        depth = (j % 5) / 4  # 0, 25, 50, 75, 100 % of the novel
        planted = sentence.format(**slots)
        _plant(rng, books[b], planted, depth)
        tasks.append(EvalTask(f"prose-{j:03d}", "needle", question.format(**slots), ((paths[b], planted),),
                              answer.format(**slots)))
    if ledger_entries:
        evidence = []
        total = 0
        for j in range(ledger_entries):
            k = rng.randint(3, 40)
            total += k
            record = _LEDGER[0].format(l=f"{_PLACES[j % len(_PLACES)]}-{j}", k=k)
            _plant(rng, books[j % novels], record, rng.random())
            evidence.append((paths[j % novels], record))
        tasks.append(EvalTask("prose-ledger", "aggregate", _LEDGER[1], tuple(evidence),
                              f"{ledger_entries} granaries, {total} sacks"))
    written: list[Novel] = []
    out.mkdir(parents=True, exist_ok=True)
    for i, chapters in enumerate(books):
        title = _TITLES[(i + seed) % len(_TITLES)]
        text = _render(title, chapters)
        (out / paths[i]).write_text(text, encoding="utf-8")
        written.append(Novel(paths[i], title, text))
    return written, tasks


def prose_tasks(out: Path, *, novels: int = 3, facts: int = 16, seed: int = 0) -> list[EvalTask]:
    """Write the novels under ``out`` and return their tasks (as ``needle_tasks`` does for its corpus)."""
    return write_novels(out, novels=novels, facts=facts, seed=seed)[1]
