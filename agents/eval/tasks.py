"""Evaluation tasks with known evidence, generated from text present on every machine.

* **needle**: facts inserted at varied depths of a long collection (filler: the Python reference
  topics in ``pydoc_data``), asked with paraphrased questions that share few words with the needle.
* **code**: a real codebase (standard-library packages) with every docstring stripped; each question
  describes one function from its docstring and asks where it is. The evidence is its ``def`` line.
* **aggregate**: records scattered over more files than a single retrieval returns; the question asks
  to count or list them all (the router should send it to map-reduce or stuff).

Everything is deterministic for a seed. Writing files is the only side effect; ingesting them is the
caller's business (the platform's ``corral eval``), so agents stay independent of ingestion.
"""

from __future__ import annotations

import ast
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["EvalTask", "code_tasks", "load_tasks", "needle_tasks", "save_tasks"]


@dataclass(frozen=True, slots=True)
class EvalTask:
    id: str
    kind: str  # needle | code | aggregate
    question: str
    evidence: tuple[tuple[str, str], ...]  # (path, exact text that must be read)
    answer: str


_NAMES = ["Marisol Quint", "Tobias Wren", "Odile Farrow", "Ignatius Pell", "Hana Lindqvist", "Caspar Mole",
          "Yusuf Adeyemi", "Greta Holm", "Priya Vasant", "Leopold Brisk", "Ines Calder", "Rafferty Dunn"]
_PLACES = ["Thornbury", "Ashcombe", "Wrenfield", "Marlow Cove", "Pennick", "Dunmore", "Halloway",
           "Brackwater", "Elsmere", "Quillon", "Saltmarsh", "Fennick"]
# (needle, question, answer); {n} name, {p} place, {k} number. Questions paraphrase the needle.
_NEEDLES = [
    ("The courier {n} always parks the blue van behind the old bakery on Elm Row.",
     "Where does {n} leave the delivery vehicle?", "behind the old bakery on Elm Row"),
    ("During night shifts, {n} snacks on pickled quail eggs and nothing else.",
     "What does {n} like to eat while working late?", "pickled quail eggs"),
    ("The vault beneath the {p} museum opens with the passphrase silver-heron-{k}.",
     "What words unlock the underground strongroom of the {p} gallery?", "silver-heron-{k}"),
    ("{n} was born in the harbour town of Kestrel Bay in the winter of 19{k}.",
     "In which coastal settlement did {n} come into the world?", "Kestrel Bay"),
    ("The orchids in the {p} greenhouse are kept at exactly {k} degrees Celsius.",
     "At what temperature are the flowers grown under glass at {p} maintained?", "{k} degrees"),
    ("Members of the {p} chess club meet every Thursday in the library basement.",
     "On which day does the {p} board-game society gather?", "Thursday"),
    ("{n} repaired the clock tower's broken gears using parts from a bicycle.",
     "What did {n} salvage to fix the mechanism of the tall timepiece?", "bicycle parts"),
    ("The secret ingredient in the {p} inn's stew is smoked juniper.",
     "What hidden flavouring goes into the {p} tavern's casserole?", "smoked juniper"),
    ("The ferry to {p} Island departs at {k} minutes past seven every morning.",
     "When does the boat crossing to {p} Island leave?", "{k} minutes past seven"),
    ("{n} keeps the spare key to the observatory inside a hollow copper owl.",
     "Where is {n}'s extra stargazing-dome key hidden?", "inside a hollow copper owl"),
    ("The lighthouse keeper {n} logged {k} passing whales last spring.",
     "What figure did {n} write down for the whales seen from the beacon?", "{k}"),
    ("The orchestra's missing violin turned up wrapped in a quilt at {p} station.",
     "Where was the symphony's lost fiddle eventually recovered?", "{p} station"),
]
_AGGREGATE = ("Inventory record: the {p} depot stores {k} crates of brass lanterns.",
              "How many depots store crates of brass lanterns, and how many crates are there in total?")


def _filler_paragraphs() -> list[str]:
    import pydoc_data.topics as topics  # the Python language reference, shipped with CPython

    paras: list[str] = []
    for name in sorted(topics.topics):
        for block in re.split(r"\n\s*\n", topics.topics[name]):
            block = block.strip()
            if 200 <= len(block) <= 2500 and "\n   " not in block:  # prose, not code samples
                paras.append(block)
    return paras


def needle_tasks(out: Path, *, documents: int, paragraphs_per_doc: int, needles: int,
                 aggregate_records: int = 12, seed: int = 0) -> list[EvalTask]:
    """Write ``documents`` text files under ``out`` with ``needles`` facts inserted at varied depths
    and, when ``aggregate_records`` > 0, one aggregation task whose records are spread over that many
    files. Returns the tasks."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    paras = _filler_paragraphs()
    docs: list[list[str]] = [rng.sample(paras, min(paragraphs_per_doc, len(paras)))
                             for _ in range(documents)]
    tasks: list[EvalTask] = []
    used: set[int] = set()
    for i in range(needles):
        tmpl, q, a = _NEEDLES[i % len(_NEEDLES)]
        slots = {"n": _NAMES[(i * 5 + seed) % len(_NAMES)], "p": _PLACES[(i * 7 + seed) % len(_PLACES)],
                 "k": str(rng.randint(11, 97))}
        d = rng.choice([x for x in range(documents) if x not in used] or list(range(documents)))
        used.add(d)
        depth = (i % 5) / 4  # 0, 25, 50, 75, 100 % of the document
        where = round(depth * len(docs[d]))
        needle = tmpl.format(**slots)
        docs[d].insert(where, needle)
        tasks.append(EvalTask(f"needle-{i:03d}", "needle", q.format(**slots),
                              ((f"doc{d:04d}.txt", needle),), a.format(**slots)))
    if aggregate_records:
        chosen = rng.sample(range(documents), min(aggregate_records, documents))
        evidence = []
        total = 0
        for j, d in enumerate(chosen):
            k = rng.randint(3, 40)
            total += k
            rec = _AGGREGATE[0].format(p=f"{_PLACES[j % len(_PLACES)]}-{j}", k=k)
            docs[d].insert(rng.randrange(len(docs[d]) + 1), rec)
            evidence.append((f"doc{d:04d}.txt", rec))
        tasks.append(EvalTask("aggregate-000", "aggregate", _AGGREGATE[1], tuple(evidence),
                              f"{len(chosen)} depots, {total} crates"))
    out.mkdir(parents=True, exist_ok=True)
    for d, body in enumerate(docs):
        (out / f"doc{d:04d}.txt").write_text("\n\n".join(body) + "\n", encoding="utf-8")
    return tasks


def _strip_docstrings(source: str) -> tuple[str, dict[str, str]]:
    """The module without docstrings (each replaced by ``...``), and function name -> docstring."""
    tree = ast.parse(source)
    lines = source.split("\n")
    docs: dict[str, str] = {}
    spans: list[tuple[int, int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                expr = body[0]
                spans.append((expr.lineno, expr.end_lineno or expr.lineno, expr.col_offset))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    docs[node.name] = body[0].value.value
    for start, end, col in sorted(spans, reverse=True):
        lines[start - 1 : end] = [" " * col + "..."]
    return "\n".join(lines), docs


def _describe(doc: str) -> str | None:
    first = re.split(r"(?<=[.!?])\s|\n\s*\n", doc.strip(), maxsplit=1)[0]
    first = " ".join(first.split()).rstrip(".")
    if len(first) < 25 or len(first) > 200 or not first[0].isalpha():
        return None
    return first[0].lower() + first[1:]


def code_tasks(out: Path, packages: list[Path], *, limit: int, seed: int = 0) -> list[EvalTask]:
    """Copy the ``.py`` files of ``packages`` under ``out`` with docstrings stripped; one task per
    function (unique name, useful docstring), at most ``limit``, sampled with ``seed``."""
    candidates: list[tuple[str, str, str, str]] = []  # (path, def line, description, name)
    names: dict[str, int] = {}
    stripped_files: dict[str, str] = {}
    for pkg in packages:
        for f in sorted(pkg.rglob("*.py")):
            if "test" in f.parts[-2:] or f.name.startswith("test"):
                continue
            rel = f"{pkg.name}/{f.relative_to(pkg).as_posix()}"
            try:
                text, docs = _strip_docstrings(f.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            stripped_files[rel] = text
            for line in text.split("\n"):
                if m := re.match(r"\s*(?:async\s+)?def\s+(\w+)\s*\(", line):
                    names[m.group(1)] = names.get(m.group(1), 0) + 1
            for name, doc in docs.items():
                desc = _describe(doc)
                def_line = next((ln for ln in text.split("\n")
                                 if re.match(rf"\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", ln)), None)
                if desc and def_line and not name.startswith("__"):
                    candidates.append((rel, def_line.strip(), desc, name))
    unique = [c[:3] for c in candidates if names.get(c[3], 0) == 1]
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    picked = rng.sample(unique, min(limit, len(unique)))
    for rel, text in stripped_files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return [EvalTask(f"code-{i:03d}", "code", f"Which function is responsible for this: {desc}?",
                     ((rel, line),), f"{rel}: {line}")
            for i, (rel, line, desc) in enumerate(picked)]


def save_tasks(path: Path, tasks: list[EvalTask]) -> None:
    path.write_text(json.dumps([asdict(t) for t in tasks], indent=1), encoding="utf-8")


def load_tasks(path: Path) -> list[EvalTask]:
    return [EvalTask(t["id"], t["kind"], t["question"], tuple((p, s) for p, s in t["evidence"]), t["answer"])
            for t in json.loads(path.read_text(encoding="utf-8"))]
