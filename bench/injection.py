"""Prompt-injection screen benchmark: precision, recall and F1 on a labelled set, and false positives
on ordinary text (every chunk of the CPython standard library, pip, and the project's README).

The labelled set is ``bench/data/injection_set.jsonl``: injections paraphrased from published sources
(named per row) and benign text that looks risky. Rows marked ``holdout`` were written after the
patterns were tuned and never tuned against: their recall is the honest estimate for new attacks.
Corpora are split with the project's own parser and chunker (``CORRAL_CHUNK_CHARS``, 1000 by default),
as ``corral ingest`` splits them; every chunk counts as benign.

Stages measured in the same run:

* ``baseline``: the pattern stage as it was before this benchmark (kept below, verbatim);
* ``patterns``: :func:`corral.agents.executor.screening.screen` as it is now;
* ``guard`` (with ``--guard-url``): the guard model alone, through :class:`GuardClassifier`, on the
  labelled set (corpora would be thousands of calls: ``--guard-corpus N`` samples N chunks);
* ``patterns+guard``: either flags.

    .venv/bin/python bench/injection.py
    .venv/bin/python bench/injection.py --show 20          # list false positives and misses
    .venv/bin/python bench/injection.py --guard-url http://127.0.0.1:8000/v1 --guard-model \\
        meta-llama/Prompt-Guard-86M --guard-format prompt-guard
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The script's folder is first on sys.path: a bench script named like a standard module (secrets.py)
# would shadow it for what is imported later (pydantic imports secrets).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "bench" / "data" / "injection_set.jsonl"

# The pattern stage before this benchmark existed (agents/executor/screening.py at 44fe5e3): the
# baseline every change is measured against.
_BASELINE = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("override", r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|"
                     r"system)\b.{0,40}\b(instructions?|prompts?|rules?|messages?|context)\b"),
        ("role-play", r"\b(you are now|act as|pretend to be|from now on,? you)\b"),
        ("reveal", r"\b(reveal|print|show|repeat|leak)\b.{0,30}\b(system prompt|hidden instructions?|"
                   r"api[_ -]?keys?|secrets?|passwords?)\b"),
        ("chat-markup", r"<\|?(im_start|im_end|system|assistant|user|eot_id|start_header_id)\|?>"
                        r"|^\s*(system|assistant)\s*:"),
        ("tool-call", r"<tool_call>|\"(function|tool)_?call\"\s*:|\{\s*\"name\"\s*:\s*\"[^\"]+\"\s*,"
                      r"\s*\"arguments\""),
        ("exfiltrate", r"\b(send|post|upload|email)\b.{0,40}\b(to|at)\b.{0,20}(https?://|\S+@\S+\.\w+)"),
    )
)


def baseline_flags(text: str) -> list[str]:
    flags: list[str] = []
    for line in text.split("\n"):
        probe = line[:4000]
        flags += [n for n, rx in _BASELINE if rx.search(probe) and n not in flags]
    return flags


def pattern_flags(text: str) -> list[str]:
    from corral.agents.executor.screening import screen

    return list(screen(text).flags)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    def add(self, truth: bool, flagged: bool, label: str) -> None:
        if truth and flagged:
            self.tp += 1
        elif truth:
            self.fn += 1
            self.misses.append(label)
        elif flagged:
            self.fp += 1
            self.false_alarms.append(label)
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_set(path: Path = SET) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if "label" in r]


def corpus_chunks(root: Path, *, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(label, text) of every chunk of the text files under ``root``, split as ``corral ingest`` does."""
    from corral.ingestion.chunking import chunk_document
    from corral.ingestion.parsing import classify, read_document
    from corral.ingestion.parsing.read import ParsedDocument

    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        rel = str(path.relative_to(root.parent))
        # Text only: images would be OCR'd (test fixtures of the stdlib), and binaries are refused.
        if any(part in path.parts for part in skip) or classify(path).kind in ("image", "binary"):
            continue
        doc = read_document(path, 10 * 1024 * 1024)
        if not isinstance(doc, ParsedDocument):
            continue
        for span in chunk_document(doc, 1000):
            yield f"{rel}:{span.start_line}-{span.end_line}", span.text


def _measure_set(rows: list[dict[str, object]], stages: dict[str, Callable[[str], bool]],
                 holdout: bool) -> dict[str, Score]:
    out = {name: Score() for name in stages}
    for row in rows:
        if bool(row.get("holdout")) != holdout:
            continue
        truth = row["label"] == "injection"
        for name, flags in stages.items():
            out[name].add(truth, flags(str(row["text"])), str(row["id"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show", type=int, default=0, help="list this many false positives and misses")
    ap.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    ap.add_argument("--pip", type=Path, default=None, help="pip's folder (default: the running one's)")
    ap.add_argument("--guard-url")
    ap.add_argument("--guard-model", default="guard")
    ap.add_argument("--guard-format", choices=("prompt-guard", "llama-guard"), default="prompt-guard")
    ap.add_argument("--guard-prompt", choices=("server", "client"), default="server")
    ap.add_argument("--guard-corpus", type=int, default=0, help="corpus chunks sampled for the guard")
    ap.add_argument("--no-corpora", action="store_true", help="the labelled set only")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    stages: dict[str, Callable[[str], bool]] = {
        "baseline": lambda t: bool(baseline_flags(t)),
        "patterns": lambda t: bool(pattern_flags(t)),
    }
    if args.guard_url:
        from corral.agents.safety import GuardClassifier, GuardConfig

        guard = GuardClassifier(GuardConfig(args.guard_url, args.guard_model, args.guard_format,
                                            prompt=args.guard_prompt, timeout_s=30.0))
        stages["guard"] = lambda t: guard.classify(t[:2000]).flagged
        stages["patterns+guard"] = lambda t: bool(pattern_flags(t)) or guard.classify(t[:2000]).flagged

    rows = load_set()
    report: dict[str, object] = {}
    n_inj = sum(r["label"] == "injection" and not r.get("holdout") for r in rows)
    n_ben = sum(r["label"] == "benign" for r in rows)
    n_hold = sum(bool(r.get("holdout")) for r in rows)
    print(f"labelled set: {n_inj} injections + {n_ben} benign (tuning), {n_hold} held-out injections")
    print(f"{'stage':<16}{'TP':>4}{'FP':>4}{'FN':>4}{'TN':>4}{'precision':>11}{'recall':>8}{'F1':>7}"
          f"{'held-out recall':>17}")
    tuned = _measure_set(rows, stages, holdout=False)
    held = _measure_set(rows, stages, holdout=True)
    for name in stages:
        s, h = tuned[name], held[name]
        print(f"{name:<16}{s.tp:>4}{s.fp:>4}{s.fn:>4}{s.tn:>4}{s.precision:>11.3f}{s.recall:>8.3f}{s.f1:>7.3f}"
              f"{f'{h.tp}/{h.tp + h.fn} = {h.recall:.3f}':>17}")
        report[name] = {"tp": s.tp, "fp": s.fp, "fn": s.fn, "tn": s.tn, "precision": s.precision,
                        "recall": s.recall, "f1": s.f1, "holdout_tp": h.tp, "holdout_n": h.tp + h.fn}
        if args.show:
            print(f"    misses: {', '.join(s.misses[: args.show]) or '-'}; held-out misses: "
                  f"{', '.join(h.misses[: args.show]) or '-'}; false positives: "
                  f"{', '.join(s.false_alarms[: args.show]) or '-'}")

    import pip

    corpora = {} if args.no_corpora else {"stdlib": (args.stdlib, ("site-packages",)),
                                          "pip": (args.pip or Path(pip.__file__).parent, ()),
                                          "README": (ROOT / "README.md", ())}
    print(f"\nfalse positives on ordinary text (every chunk is benign)\n{'corpus':<8}{'chunks':>8}"
          f"{'baseline':>16}{'patterns':>16}{'seconds':>9}")
    sample: list[str] = []
    for name, (root, skip) in corpora.items():
        started = time.perf_counter()
        n = base = new = 0
        shown: list[str] = []
        for label, text in corpus_chunks(root, skip=skip):
            n += 1
            base += bool(baseline_flags(text))
            flags = pattern_flags(text)
            if flags:
                new += 1
                if len(shown) < args.show:
                    line = next((ln for ln in text.split("\n") if pattern_flags(ln)), "")
                    shown.append(f"    {label} {flags}: {line.strip()[:140]}")
            if args.guard_corpus and random.random() < 0.02:
                sample.append(text)
        seconds = time.perf_counter() - started
        print(f"{name:<8}{n:>8}{f'{base} ({base / max(n, 1):.2%})':>16}{f'{new} ({new / max(n, 1):.2%})':>16}"
              f"{seconds:>9.1f}")
        report[f"corpus:{name}"] = {"chunks": n, "baseline_fp": base, "patterns_fp": new}
        for line in shown:
            print(line)
    if args.guard_url and args.guard_corpus:
        picked = sample[: args.guard_corpus]
        flagged = sum(stages["guard"](t) for t in picked)
        print(f"guard on {len(picked)} sampled corpus chunks: {flagged} flagged")
        report["guard_corpus_sample"] = {"chunks": len(picked), "flagged": flagged}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
